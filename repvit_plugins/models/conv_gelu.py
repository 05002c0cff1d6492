"""A convolution and the exact GELU after it as one oneDNN kernel on the CPU (the convolution's GELU post-op).

RepViT's stem and channel mixers run a convolution, then GELU over its whole output: a second pass over the
largest activations of an encoder (at 256x256 and 128x128 in a SAM encoder). oneDNN applies the same GELU
(erf, not the tanh approximation) while the convolution's output is still in cache: 20-40 % off each pair
on a 2-core Xeon. Outputs equal the two-step computation to float rounding (tested). Other devices, and dtypes
oneDNN cannot run on this CPU (bf16 without AVX-512 / AVX-NE-CONVERT), take the two-step path.

:func:`fuse_conv_gelu` rewrites a model in place; the fused layer is an ``nn.Conv2d`` holding the same
parameters, so state dicts keep their keys. Use it for inference in PyTorch only: ONNX / Core ML export and
``torch.compile`` want the plain layers.
"""
from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["ConvGelu", "fuse_conv_gelu"]


@functools.lru_cache(maxsize=None)
def _onednn_runs(dtype: torch.dtype) -> bool:
    """Whether oneDNN's fused convolution runs ``dtype`` on this CPU."""
    if not torch.backends.mkldnn.is_available():
        return False
    if dtype == torch.float32:
        return True
    if dtype == torch.bfloat16:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


class ConvGelu(nn.Conv2d):
    """``gelu(conv(x))`` with exact GELU, as one oneDNN kernel where it can run (see the module docstring)."""

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> ConvGelu:
        """A ConvGelu sharing ``conv``'s parameters (and their memory format)."""
        geometry: dict[str, Any] = dict(kernel_size=conv.kernel_size, stride=conv.stride, padding=conv.padding,
                                        dilation=conv.dilation)  # 2-tuples, which torch's stubs type as tuple[int, ...]
        fused = cls(conv.in_channels, conv.out_channels, groups=conv.groups, bias=conv.bias is not None,
                    padding_mode=conv.padding_mode, device="meta", **geometry)  # parameters come from conv
        fused.weight = conv.weight
        fused.bias = conv.bias
        return fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
        if x.device.type != "cpu" or self.padding_mode != "zeros" or isinstance(self.padding, str) \
                or not _onednn_runs(dtype):
            return F.gelu(super().forward(x))
        bias = None if self.bias is None else self.bias.to(dtype)
        return torch.ops.mkldnn._convolution_pointwise(x.to(dtype), self.weight.to(dtype), bias, self.padding,
                                                       self.stride, self.dilation, self.groups, "gelu", [], "none")


def fuse_conv_gelu(model: nn.Module) -> int:
    """Replace every ``Conv2d`` directly followed by exact ``GELU`` in a ``Sequential`` of ``model``; how many."""
    fused = 0
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        layers = list(module)
        for i in range(len(layers) - 1):
            conv, act = layers[i], layers[i + 1]
            if type(conv) is nn.Conv2d and isinstance(act, nn.GELU) and act.approximate == "none":
                module[i], module[i + 1] = ConvGelu.from_conv(conv), nn.Identity()
                fused += 1
    return fused
