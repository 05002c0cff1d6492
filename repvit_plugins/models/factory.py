"""Build a RepViT and load its weights from a path, zoo name or state dict, in any accepted layout."""
from __future__ import annotations

import os
from typing import Mapping, TypeVar

import torch

from ..weights.checkpoint_io import extract_state_dict, load_checkpoint_file, strict_load
from ..weights.zoo import resolve_checkpoint
from .repvit import RepViT
from .repvit_keys import is_timm_layout, timm_to_official

__all__ = ["build_repvit", "load_repvit_weights", "read_state_dict"]

_WRAPPER_PREFIXES = ("backbone.", "image_encoder.", "model.")
_Model = TypeVar("_Model", bound=RepViT)  # RepViT or a subclass (the mm backbone), returned as given


def read_state_dict(spec: str | os.PathLike | Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    """``(state dict, description)`` from a state dict, a path or a zoo name (``torch.load(weights_only=True)``)."""
    if isinstance(spec, Mapping):
        if not all(torch.is_tensor(v) for v in spec.values()):
            raise TypeError("a state dict maps parameter names to tensors; pass a nested checkpoint by its path")
        return dict(spec), "state dict"
    path = resolve_checkpoint(spec)
    return extract_state_dict(load_checkpoint_file(path)), str(path)


def load_repvit_weights(model: _Model, spec: str | os.PathLike | Mapping[str, torch.Tensor], *,
                        prefix: str | None = None) -> _Model:
    """Load RepViT weights from a path, zoo name or state dict, in any accepted layout.

    Layouts: raw state dict, ``{'model': ...}``, ``{'state_dict': ...}`` (with
    ``backbone.`` prefixes), timm's ``RepVit``. Classifier heads in the file are
    ignored when the model has none (backbone use).
    """
    state, what = read_state_dict(spec)
    if prefix is None:
        prefix = next((p for p in _WRAPPER_PREFIXES if any(k.startswith(p) for k in state)), "")
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if is_timm_layout(state):
        state = timm_to_official(state, model.arch_name)
    has_head = getattr(model, "classifier", None) is not None
    strict_load(model, state, ignore=None if has_head else r"classifier\.|neck\.", what=what)
    return model


def build_repvit(arch: str = "m1_1", num_classes: int = 1000, distillation: bool = False,
                 pretrained: str | None = None, **kwargs) -> RepViT:
    """Build a RepViT; ``pretrained`` is a path, URL-free zoo name or ``None``.

    Accepted checkpoint layouts: raw state dict, ``{'model': ...}``,
    ``{'state_dict': ...}`` (``backbone.`` prefixes stripped) and timm's layout.
    """
    model = RepViT(arch, num_classes=num_classes, distillation=distillation, **kwargs)
    if pretrained is not None:
        load_repvit_weights(model, pretrained)
    return model
