"""A text encoder that remembers its outputs for the last few prompts.

Grounding DINO (and MM-Grounding-DINO / LLMDet) run their BERT on every call, although its
output depends only on the prompt's token ids and masks, which are the same for every image
of a ``detect`` call and across calls with the same prompt. :func:`use_text_feature_cache`
turns a text encoder into one that looks its inputs up first (exact match of every tensor
argument, its shape, dtype and device, and the autocast state) and runs only on a miss,
keeping the last :data:`CACHE_SIZE` results. The module keeps its class (a subclass of it),
weights and ``state_dict``; while training, with gradients on, or under tracing / compiling it
always runs.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Hashable

import torch
from torch import nn

__all__ = ["CACHE_SIZE", "TextFeatureCache", "clear_text_cache", "use_text_feature_cache"]

CACHE_SIZE = 4
"""Prompts (with their batch sizes) remembered per text encoder."""


def _part(value: Any) -> Hashable:
    if isinstance(value, torch.Tensor):
        data = value.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
        return ("tensor", tuple(value.shape), str(value.dtype), str(value.device), data.numpy().tobytes())
    if isinstance(value, (tuple, list)):
        return tuple(_part(v) for v in value)
    return repr(value)


class TextFeatureCache:
    """Mixed in before a text encoder's class: ``forward`` answers repeated inputs from a small LRU cache."""

    def _text_cache(self) -> OrderedDict:
        return self.__dict__.setdefault("_text_feature_cache", OrderedDict())

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if (self.training or torch.is_grad_enabled() or torch.jit.is_tracing()  # type: ignore[attr-defined]
                or torch.compiler.is_compiling()):
            return super().forward(*args, **kwargs)  # type: ignore[misc]
        tensors = [v for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor)]
        device_type = tensors[0].device.type if tensors else "cpu"
        autocast_state = (torch.is_autocast_enabled(device_type), torch.get_autocast_dtype(device_type))
        key = (_part(args), _part(sorted(kwargs.items())), repr(autocast_state))
        cache = self._text_cache()
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        output = super().forward(*args, **kwargs)  # type: ignore[misc]
        cache[key] = output
        while len(cache) > CACHE_SIZE:
            cache.popitem(last=False)
        return output


_CACHED_CLASSES: dict[type, type] = {}


def _cached_class(kind: type) -> type:
    """One cached subclass per text-encoder class."""
    if kind not in _CACHED_CLASSES:
        _CACHED_CLASSES[kind] = type(f"TextCached{kind.__name__}", (TextFeatureCache, kind), {"__module__": __name__})
    return _CACHED_CLASSES[kind]


def use_text_feature_cache(module: nn.Module) -> nn.Module:
    """Give ``module`` (a text encoder, e.g. ``model.model.text_backbone``) the cache, in place; returns it."""
    if not isinstance(module, TextFeatureCache):
        module.__class__ = _cached_class(type(module))
    return module


def clear_text_cache(model: nn.Module) -> int:
    """Forget every cached text output in ``model`` (needed after changing its weights); how many were dropped."""
    dropped = 0
    for module in model.modules():
        if isinstance(module, TextFeatureCache):
            cache = module._text_cache()
            dropped += len(cache)
            cache.clear()
    return dropped
