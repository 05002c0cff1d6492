"""A convolution or Linear layer and the activation after it as one oneDNN kernel on the CPU (a post-op).

GELU, ReLU or SiLU right after a layer is a second pass over that layer's whole output, often the largest
activations of a network (a SAM encoder's stem at 256x256, Swin's first MLP over 25 600 tokens at 640x640).
oneDNN applies the same function (GELU with erf, not the tanh approximation) while the output is still in
cache: 20-40 % off each pair measured on a 2-core Xeon, up to 3x for Swin's first MLP in bf16. Outputs equal
the two-step computation to float rounding (tested). Other devices, calls that record gradients (the kernels
have no backward), and dtypes oneDNN cannot run on this CPU (bf16 without AVX-512 / AVX-NE-CONVERT) take the
two-step path.

:func:`fuse_activations` rewrites a model in place. The fused layers are ``nn.Conv2d`` / ``nn.Linear``
holding the same parameters, so state dicts keep their keys. For inference in PyTorch only: ONNX / Core ML
export and ``torch.compile`` want the plain layers.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["FusedConv2d", "FusedLinear", "activation_name", "fuse_activations"]

_ONEDNN: dict[str, tuple[str, str]] = {"gelu": ("gelu", "none"), "relu": ("relu", ""), "silu": ("swish", "")}
"""Our activation name -> oneDNN post-op attribute and algorithm (GELU's ``"none"``: erf, not tanh)."""
_TWO_STEP: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"gelu": F.gelu, "relu": F.relu, "silu": F.silu}

_HOLDERS: dict[str, tuple[str, str, str]] = {
    "Mlp": ("fc1", "act", ""),  # timm (Swin's MLP)
    "SwinIntermediate": ("dense", "intermediate_act_fn", ""),  # transformers' Swin (Grounding DINO's backbone)
    "BertIntermediate": ("dense", "intermediate_act_fn", ""),
    "OmDetTurboDeformableTransformerDecoderLayer": ("linear1", "act", ""),
    **{f"{family}{layer}": ("fc1", act, "") for family in ("GroundingDino", "MMGroundingDino")
       for layer, act in (("DeformableLayer", "activation_fn"), ("DecoderLayer", "activation_fn"),
                          ("TextEnhancerLayer", "activation"))},  # their feed-forward layers
    "OmDetTurboConvNormLayer": ("conv", "activation", "norm"),  # once its BatchNorm is folded (omdet_speed)
}
"""Layers whose forward applies ``activation`` right after ``layer``: class name -> (layer, activation, and a
module between the two that must be an ``Identity`` for the pair to fuse, or ``''``)."""


def activation_name(module: Any) -> str | None:
    """``'gelu'`` (exact), ``'relu'`` or ``'silu'`` for an activation module oneDNN can fuse, else ``None``."""
    if isinstance(module, nn.GELU):
        return "gelu" if module.approximate == "none" else None
    if isinstance(module, nn.ReLU):
        return "relu"
    if isinstance(module, nn.SiLU) or type(module).__name__ == "SiLUActivation":
        return "silu"
    if type(module).__name__ == "GELUActivation" and getattr(module, "act", None) is F.gelu:
        return "gelu"  # transformers' exact GELU
    return None


@functools.lru_cache(maxsize=None)
def _onednn_runs(dtype: torch.dtype) -> bool:
    """Whether oneDNN's fused kernels run ``dtype`` on this CPU."""
    if not torch.backends.mkldnn.is_available():
        return False
    if dtype == torch.float32:
        return True
    return dtype == torch.bfloat16 and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _fused_dtype(layer: nn.Module, x: torch.Tensor) -> torch.dtype | None:
    """The dtype the fused kernel runs in for ``x``, or ``None`` where the two-step path must run."""
    weight: Any = layer.weight
    if x.device.type != "cpu" or torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return None  # the fused kernels have no backward
    dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
    return dtype if _onednn_runs(dtype) else None


class FusedConv2d(nn.Conv2d):
    """``activation(conv(x))`` as one oneDNN kernel where it can run."""

    activation: str = "gelu"

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, activation: str) -> FusedConv2d:
        """A FusedConv2d sharing ``conv``'s parameters (and their memory format)."""
        geometry: dict[str, Any] = dict(kernel_size=conv.kernel_size, stride=conv.stride, padding=conv.padding,
                                        dilation=conv.dilation)  # 2-tuples, which torch's stubs type as tuple[int, ...]
        fused = cls(conv.in_channels, conv.out_channels, groups=conv.groups, bias=conv.bias is not None,
                    padding_mode=conv.padding_mode, device="meta", **geometry)  # parameters come from conv
        fused.weight, fused.bias, fused.activation = conv.weight, conv.bias, activation
        return fused.train(conv.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = _fused_dtype(self, x)
        if dtype is None or self.padding_mode != "zeros" or isinstance(self.padding, str):
            return _TWO_STEP[self.activation](super().forward(x))
        bias = None if self.bias is None else self.bias.to(dtype)
        attr, algorithm = _ONEDNN[self.activation]
        return torch.ops.mkldnn._convolution_pointwise(x.to(dtype), self.weight.to(dtype), bias, self.padding,
                                                       self.stride, self.dilation, self.groups, attr, [], algorithm)


class FusedLinear(nn.Linear):
    """``activation(linear(x))`` as one oneDNN kernel where it can run."""

    activation: str = "gelu"

    @classmethod
    def from_linear(cls, linear: nn.Linear, activation: str) -> FusedLinear:
        """A FusedLinear sharing ``linear``'s parameters."""
        fused = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta")
        fused.weight, fused.bias, fused.activation = linear.weight, linear.bias, activation
        return fused.train(linear.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = _fused_dtype(self, x)
        if dtype is None:
            return _TWO_STEP[self.activation](super().forward(x))
        bias = None if self.bias is None else self.bias.to(dtype)
        attr, algorithm = _ONEDNN[self.activation]
        return torch.ops.mkldnn._linear_pointwise(x.to(dtype), self.weight.to(dtype), bias, attr, [], algorithm)


def _fused(layer: Any, activation: str) -> nn.Module | None:
    """``layer`` fused with ``activation``, or ``None`` when it is not a plain Conv2d / Linear."""
    if type(layer) is nn.Conv2d:
        return FusedConv2d.from_conv(layer, activation)
    if type(layer) is nn.Linear:
        return FusedLinear.from_linear(layer, activation)
    return None


def fuse_activations(model: nn.Module) -> int:
    """Fuse every layer + activation pair of ``model`` (see the module docstring) in place; how many."""
    count = 0
    for module in model.modules():
        holder: Any = module  # plain attributes of third-party layers
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                name = activation_name(module[i + 1])
                fused = _fused(module[i], name) if name else None
                if fused is not None:
                    module[i], module[i + 1] = fused, nn.Identity()
                    count += 1
        elif type(module).__name__ in _HOLDERS:
            layer_attr, act_attr, between = _HOLDERS[type(module).__name__]
            if between and not isinstance(getattr(holder, between, None), nn.Identity):
                continue  # e.g. a ConvNormLayer whose BatchNorm still sits between the two
            name = activation_name(getattr(holder, act_attr, None))
            fused = _fused(getattr(holder, layer_attr, None), name) if name else None
            if fused is not None:
                setattr(holder, layer_attr, fused)
                setattr(holder, act_attr, nn.Identity())
                count += 1
    return count
