"""RepViT state-dict key layouts: the official names <-> timm's ``RepVit`` names."""
from __future__ import annotations

from typing import Mapping

import torch

from .repvit import ARCHS

__all__ = ["official_to_timm", "timm_to_official", "is_timm_layout"]


# (official suffix, timm suffix) of the four convolutions of a downsample block and of a stride-1 block
_DOWNSAMPLE_KEYS = (("token_mixer.0.", "spatial_downsample."), ("token_mixer.2.", "channel_downsample."),
                    ("channel_mixer.m.0.", "ffn.conv1."), ("channel_mixer.m.2.", "ffn.conv2."))
_BLOCK_KEYS = (("token_mixer.0.", "token_mixer."), ("token_mixer.1.", "se."),
               ("channel_mixer.m.0.", "channel_mixer.conv1."), ("channel_mixer.m.2.", "channel_mixer.conv2."))


def _layout_pairs(arch: str) -> list[tuple[str, str]]:
    """``(official_prefix, timm_prefix)`` pairs for ``arch``."""
    pairs = [("features.0.0.", "stem.conv1."), ("features.0.2.", "stem.conv2.")]
    index = 1
    for stage, depth in enumerate(ARCHS[arch].depths):
        blocks = [(f"stages.{stage}.downsample.", _DOWNSAMPLE_KEYS)] if stage > 0 else []
        for j in range(depth):  # timm keeps the last block before a downsample inside that downsample
            before_downsample = stage < 3 and j == depth - 1
            prefix = f"stages.{stage + 1}.downsample.pre_block." if before_downsample else f"stages.{stage}.blocks.{j}."
            blocks.append((prefix, _BLOCK_KEYS))
        for prefix, keys in blocks:
            pairs += [(f"features.{index}.{official}", prefix + timm) for official, timm in keys]
            index += 1
    pairs += [("classifier.classifier.", "head.head."), ("classifier.classifier_dist.", "head.head_dist.")]
    return pairs


def _rename(state: Mapping[str, torch.Tensor], pairs: list[tuple[str, str]]) -> dict[str, torch.Tensor]:
    """``state`` with the first matching ``src`` prefix of each key replaced by its ``dst``."""
    out = {}
    for key, value in state.items():
        for src, dst in pairs:
            if key.startswith(src):
                out[dst + key[len(src):]] = value
                break
        else:
            out[key] = value
    return out


def official_to_timm(state: Mapping[str, torch.Tensor], arch: str) -> dict[str, torch.Tensor]:
    """Rename an official RepViT state dict to timm's ``RepVit`` layout."""
    return _rename(state, _layout_pairs(arch))


def timm_to_official(state: Mapping[str, torch.Tensor], arch: str) -> dict[str, torch.Tensor]:
    """Rename a timm ``RepVit`` state dict to the official layout."""
    return _rename(state, [(dst, src) for src, dst in _layout_pairs(arch)])


def is_timm_layout(state: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``state`` uses timm's names (``stem.``, ``stages.``)."""
    return any(k.startswith(("stem.", "stages.")) for k in state)
