"""Exact CPU speed-ups for transformers' OmDet-Turbo: the same weights and outputs (float32 rounding aside).

* timm's Swin window attention runs its fused kernel (``scaled_dot_product_attention`` with the
  relative-position bias and shift mask as its additive mask). timm only picks it under an opt-in flag.
* OmDet's own multi-head attention (the decoder's 900 queries + task tokens, the encoder's AIFI layer)
  runs ``scaled_dot_product_attention`` instead of matmul, divide, mask add, softmax and matmul, each a
  pass over a ``heads x 914 x 914`` score tensor.
* Every Conv + BatchNorm of the hybrid encoder becomes one convolution with a bias, and each RepVGG
  block's 1x1 branch is folded into its 3x3 kernel (``3x3(x) + 1x1(x)`` is one 3x3 convolution).
* Every Linear / convolution followed by GELU, ReLU or SiLU (Swin's MLPs, the decoder's feed-forward layers, the
  encoder's convolutions) runs as one oneDNN kernel (:mod:`~repvit_plugins.runtime.fused_activation`).
* The hybrid encoder's convolutions run channels-last (oneDNN's fastest layout on the CPU).
* The decoder's deformable attention is the package's gather kernel
  (:mod:`~repvit_plugins.grounding.deformable_attention`).

Call :func:`speed_up_omdet` on an eval-mode float32 model, before its weights are cast to bf16.
"""
from __future__ import annotations

import math
import types
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..models.repvit import conv_like, fold_bn
from ..runtime.fused_activation import fuse_activations
from .deformable_attention import use_fast_deformable_attention

__all__ = ["encoder_channels_last", "fuse_conv_norms", "speed_up_omdet", "use_fused_window_attention",
           "use_sdpa_attention"]


def use_fused_window_attention(model: nn.Module) -> int:
    """Switch timm's Swin ``WindowAttention`` modules in ``model`` to their fused kernel; how many."""
    switched = 0
    for module in model.modules():
        attention: Any = module  # timm's flag is a plain attribute (Module.__setattr__ types tensors and modules)
        if type(module).__name__ == "WindowAttention" and hasattr(attention, "fused_attn"):
            attention.fused_attn = True
            switched += 1
    return switched


def _sdpa_forward(self: Any, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                  attention_mask: torch.Tensor | None = None, output_attentions: bool | None = False
                  ) -> tuple[torch.Tensor, ...]:
    """``OmDetTurboMultiheadAttention.forward`` through ``scaled_dot_product_attention`` (inference)."""
    if output_attentions:  # the weights are asked for: the original computes them
        return type(self).forward(self, queries, keys, values, attention_mask, output_attentions)
    batch = queries.shape[0]
    heads, size = self.num_attention_heads, self.attention_head_size

    def split(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        return layer(x).view(batch, -1, heads, size).transpose(1, 2)

    q, k, v = split(self.query, queries), split(self.key, keys), split(self.value, values)
    mask = None if attention_mask is None else attention_mask.to(q.dtype)
    context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1 / math.sqrt(size))
    return (self.out_proj(context.transpose(1, 2).reshape(batch, -1, heads * size)),)


def use_sdpa_attention(model: nn.Module) -> int:
    """Run every ``OmDetTurboMultiheadAttention`` of ``model`` through ``scaled_dot_product_attention``; how many."""
    swapped = 0
    for module in model.modules():
        if type(module).__name__ == "OmDetTurboMultiheadAttention":
            module.forward = types.MethodType(_sdpa_forward, module)
            swapped += 1
    return swapped


def _folded(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """``norm(conv(x))`` (an eval-mode BatchNorm) as one convolution's ``(weight, bias)``."""
    return fold_bn(conv.weight, conv.bias, norm)


def _set_conv(layer: Any, weight: torch.Tensor, bias: torch.Tensor) -> None:
    """Give a ConvNorm layer the folded kernel, with a bias and no norm."""
    layer.conv, layer.norm = conv_like(layer.conv, weight, bias), nn.Identity()


@torch.no_grad()
def fuse_conv_norms(model: nn.Module) -> int:
    """Fold BatchNorm into the convolutions of OmDet's encoder and merge RepVGG branches; how many were folded."""
    fused = 0
    for module in model.modules():
        block: Any = module  # transformers' layers: their children are plain attributes to mypy
        if type(block).__name__ == "OmDetTurboRepVggBlock" and isinstance(block.conv1.norm, nn.BatchNorm2d):
            w3, b3 = _folded(block.conv1.conv, block.conv1.norm)
            w1, b1 = _folded(block.conv2.conv, block.conv2.norm)
            _set_conv(block.conv1, w3 + F.pad(w1, (1, 1, 1, 1)), b3 + b1)
            block.conv1.activation, block.activation = block.activation, nn.Identity()  # fusable with the conv
            block.forward = types.MethodType(_rep_vgg_forward, block)
            del block.conv2
            fused += 1
    for module in model.modules():
        layer: Any = module
        if type(layer).__name__ == "OmDetTurboConvNormLayer" and isinstance(layer.norm, nn.BatchNorm2d):
            _set_conv(layer, *_folded(layer.conv, layer.norm))
            fused += 1
        elif isinstance(layer, nn.Sequential) and len(layer) == 2 and isinstance(layer[0], nn.Conv2d) \
                and isinstance(layer[1], nn.BatchNorm2d):  # the channel projections: Conv2d + BatchNorm2d
            layer[0], layer[1] = conv_like(layer[0], *_folded(layer[0], layer[1])), nn.Identity()
            fused += 1
    return fused


def _rep_vgg_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
    """A RepVGG block whose 1x1 branch lives inside ``conv1``'s 3x3 kernel (and its activation in ``conv1``)."""
    return self.conv1(x)


def encoder_channels_last(model: nn.Module) -> int:
    """Store the hybrid encoder's convolution weights channels-last; how many encoders."""
    encoders = [m for m in model.modules() if type(m).__name__ == "OmDetTurboHybridEncoder"]
    for encoder in encoders:
        encoder.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stubs lack it
    return len(encoders)


def speed_up_omdet(model: nn.Module) -> dict[str, int]:
    """Apply every speed-up of this module to an eval-mode float32 OmDet-Turbo; how many modules each changed."""
    if model.training:
        raise ValueError("speed_up_omdet folds BatchNorm statistics: call model.eval() first")
    return {"window_attention": use_fused_window_attention(model), "attention": use_sdpa_attention(model),
            "conv_norm": fuse_conv_norms(model), "activations": fuse_activations(model),
            "channels_last": encoder_channels_last(model), "deformable_attention": use_fast_deformable_attention(model)}
