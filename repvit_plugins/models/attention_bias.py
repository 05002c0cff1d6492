"""Relative-offset attention biases of EfficientFormer (v1/v2) at another input size than they were trained at.

Both families keep, per head, a table of biases indexed by the offset ``(|dy|, |dx|)`` between two tokens
(``|dy| * w + |dx|`` into ``attention_biases``, shape ``(heads, h * w)``), sized for a 224x224 input. timm
builds EfficientFormerV2 for any ``img_size``; EfficientFormer (v1) stays at 7x7 tokens, so
:func:`set_attention_resolution` rebuilds its tables. Tables of a checkpoint are resampled bicubically over
the offset grid (:func:`fit_attention_biases`), the usual way position biases move to a new resolution.
"""
from __future__ import annotations

import math
from typing import Mapping

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["fit_attention_biases", "relative_offset_index", "resize_bias_table", "set_attention_resolution"]

_V1_ATTENTION_STRIDE = 32  # EfficientFormer (v1) attends only in its last stage


def resize_bias_table(table: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A ``(heads, s * s)`` table over a square offset grid, resampled to ``(heads, size[0] * size[1])``."""
    heads, count = table.shape
    side = math.isqrt(count)
    if side * side != count:
        raise ValueError(f"attention bias table of {count} offsets is not a square grid")
    grid = table.detach().float().reshape(1, heads, side, side)
    out = F.interpolate(grid, size=tuple(size), mode="bicubic", align_corners=False)
    return out.reshape(heads, -1).to(table.dtype)


def relative_offset_index(h: int, w: int, device: torch.device | None = None) -> torch.Tensor:
    """``(h * w, h * w)`` index ``|dy| * w + |dx|`` of every token pair into a bias table."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    return (ys[:, None] - ys[None]).abs() * w + (xs[:, None] - xs[None]).abs()


@torch.no_grad()
def set_attention_resolution(model: nn.Module, img_size: tuple[int, int]) -> None:
    """Size timm EfficientFormer (v1) attention for ``img_size`` inputs; other models are left as they are."""
    from timm.models.efficientformer import Attention

    h, w = (math.ceil(s / _V1_ATTENTION_STRIDE) for s in img_size)
    for module in model.modules():
        if isinstance(module, Attention) and module.attention_biases.shape[1] != h * w:
            table = module.attention_biases
            module.attention_biases = nn.Parameter(resize_bias_table(table, (h, w)).to(table.device))
            module.attention_bias_idxs = relative_offset_index(h, w, table.device)
            module.attention_bias_cache = {}
            # a plain attribute of ours; nn.Module.__setattr__ is typed for tensors and modules only
            module.resolution = (h, w)  # type: ignore[assignment]


def fit_attention_biases(state: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """``state`` with bias tables resampled to ``model``'s resolution and offset indices taken from the model."""
    own = model.state_dict()
    fitted = dict(state)
    for key, value in state.items():
        if key not in own or value.shape == own[key].shape:
            continue
        if key.endswith("attention_bias_idxs"):  # derived from the resolution, not learned
            fitted[key] = own[key]
        elif key.endswith("attention_biases"):
            height, width = model.get_submodule(key.rsplit(".", 1)[0]).resolution  # type: ignore[misc]  # our tuple
            fitted[key] = resize_bias_table(value, (height, width))
    return fitted
