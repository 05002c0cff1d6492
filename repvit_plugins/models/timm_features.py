"""timm models as multi-scale feature extractors: build (``features_only``), describe (``feature_info``), load.

``out_indices`` follows timm: an int takes the last N feature levels, a sequence picks levels (negative from
the end). :func:`feature_info` describes a model without building its weights (meta device), so configs
read neck channels and strides from it instead of hard-coding them.
"""
from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Mapping, Sequence

import torch
from torch import nn

from ..weights.checkpoint_io import CheckpointError, strict_load
from .attention_bias import fit_attention_biases, set_attention_resolution
from .factory import read_state_dict

if TYPE_CHECKING:
    from timm.models import FeatureInfo  # timm itself is imported when a model is built

__all__ = ["create_features", "feature_channels", "feature_info", "feature_levels", "feature_strides",
           "load_timm_features_weights"]

OutIndices = int | Sequence[int]
_WRAPPER_PREFIXES = ("backbone.", "model.")  # mm checkpoints; timm's FeatureGetterNet and TimmBackbone wrappers


def _size(img_size: int | Sequence[int]) -> tuple[int, int]:
    return (img_size, img_size) if isinstance(img_size, int) else (int(img_size[0]), int(img_size[1]))


def create_features(model_name: str, out_indices: OutIndices = 4, img_size: int | Sequence[int] | None = None,
                    **kwargs) -> nn.Module:
    """``timm.create_model(model_name, features_only=True, pretrained=False)``; random weights, nothing downloaded.

    ``img_size`` builds a model with fixed-resolution attention (EfficientFormer v1/v2) for that input size;
    other keyword arguments go to timm (``drop_path_rate``, ...).
    """
    import timm

    indices = out_indices if isinstance(out_indices, int) else tuple(out_indices)
    if img_size is not None:
        kwargs["img_size"] = _size(img_size)
    model = timm.create_model(model_name, pretrained=False, features_only=True, out_indices=indices, **kwargs)
    if img_size is not None:
        set_attention_resolution(model, _size(img_size))
    return model


def feature_levels(model: nn.Module) -> FeatureInfo:
    """The ``FeatureInfo`` timm attaches to a model built by :func:`create_features`."""
    from timm.models import FeatureInfo

    info = model.feature_info
    if not isinstance(info, FeatureInfo):
        raise TypeError(f"{type(model).__name__} is not a timm features_only model")
    return info


@functools.lru_cache(maxsize=64)
def _describe(model_name: str, out_indices: OutIndices, kwargs: tuple) -> tuple[tuple[int, int, str], ...]:
    with torch.device("meta"):
        info = feature_levels(create_features(model_name, out_indices, **dict(kwargs)))
    return tuple((d["num_chs"], d["reduction"], d["module"]) for d in info.get_dicts())


def feature_info(model_name: str, out_indices: OutIndices = 4, **kwargs) -> list[dict]:
    """timm's ``feature_info`` of the chosen levels: ``[{'num_chs', 'reduction', 'module'}, ...]``."""
    key = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items()))
    indices = out_indices if isinstance(out_indices, int) else tuple(out_indices)
    return [dict(num_chs=c, reduction=r, module=m) for c, r, m in _describe(model_name, indices, key)]


def feature_channels(model_name: str, out_indices: OutIndices = 4, **kwargs) -> list[int]:
    """Channels of the chosen levels (what an FPN's ``in_channels`` must be)."""
    return [d["num_chs"] for d in feature_info(model_name, out_indices, **kwargs)]


def feature_strides(model_name: str, out_indices: OutIndices = 4, **kwargs) -> list[int]:
    """Output strides (timm's ``reduction``) of the chosen levels."""
    return [d["reduction"] for d in feature_info(model_name, out_indices, **kwargs)]


def _normalized(key: str) -> str:
    """One spelling for a parameter in a timm model, its ``features_only`` wrappers and mm checkpoints."""
    for prefix in _WRAPPER_PREFIXES:
        while key.startswith(prefix):
            key = key[len(prefix):]
    return key.replace(".", "_")  # timm flattens 'stages.0' to 'stages_0' in FeatureListNet


def load_timm_features_weights(model: nn.Module, spec: str | os.PathLike | Mapping[str, torch.Tensor], *,
                               prefix: str | None = None) -> nn.Module:
    """Load a timm checkpoint (classification layout, plain or in ``{'model'|'state_dict': ...}``) into ``model``.

    ``model`` is a ``features_only`` model (or a module holding one). Every one of its tensors must be found;
    checkpoint tensors it has no use for (classifier, final norm, stages past the last tap) are ignored.
    """
    state, what = read_state_dict(spec)
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    by_name: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        by_name.setdefault(_normalized(key), value)
    own = model.state_dict()
    if len({_normalized(k) for k in own}) != len(own):
        raise CheckpointError(f"{type(model).__name__}: parameter names collide once normalized; load it by hand")
    mapped = {k: by_name[_normalized(k)] for k in own if _normalized(k) in by_name}
    strict_load(model, fit_attention_biases(mapped, model), what=what)
    return model
