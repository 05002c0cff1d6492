"""Speed presets: which numeric path the detector and the SAM encoder run on this machine.

``exact`` is float32 everywhere. ``balanced`` (the default) autocasts both models to
bfloat16 where the hardware computes it natively (AVX512-BF16 / AMX CPUs, CUDA GPUs
with bf16, else float16 on CUDA) and stays float32 elsewhere: emulated bf16 on an
AVX2-only CPU is slower than float32. ``fast`` adds a lower detector resolution
(shortest edge 512), trading accuracy for speed. ``realtime`` keeps ``balanced``'s numerics and
picks the fastest detector and SAM of the zoos (:class:`~repvit_plugins.options.ModelOptions` resolves
them; the detector runs at its own input size). CPU features are detected at run
time, never assumed; ``REPVIT_PLUGINS_BF16=0|1`` overrides the detection.
"""
from __future__ import annotations

import contextlib
import functools
import os
import platform
from dataclasses import asdict, dataclass, replace
from typing import Any, ContextManager

import torch

from ..options import SPEED_PRESETS, ModelOptions
from .switches import env_switch

__all__ = ["PRECISIONS", "SPEED_PRESETS", "AutocastModule", "SpeedPlan", "autocast", "autocast_dtype",
           "cast_matmul_weights", "cpu_description", "native_cpu_bf16", "speed_plan", "speed_plan_of"]

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
FAST_IMAGE_SIZE = (512, 853)
"""Detector resize of the ``fast`` preset (shortest, longest edge): 800/1333 scaled to 512."""


@functools.lru_cache(maxsize=None)
def native_cpu_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (oneDNN's bf16 kernels and AVX512-BF16 or AMX present)."""
    forced = env_switch("REPVIT_PLUGINS_BF16")
    if forced is not None:
        return forced
    if not torch.backends.mkldnn.is_available() or not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return False  # also False under ONEDNN_MAX_CPU_ISA=AVX2, which emulates an AVX2-only CPU
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def cpu_description() -> str:
    """The CPU model, its core count and the vector / matrix features that matter for the speed paths."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            name = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    checks = {"AVX2": torch.cpu._is_avx2_supported, "AVX-512": torch.cpu._is_avx512_supported,
              "VNNI": torch.cpu._is_vnni_supported, "AVX512-BF16": torch.cpu._is_avx512_bf16_supported,
              "AMX": torch.cpu._is_amx_tile_supported}
    flags = [flag for flag, check in checks.items() if check()]
    return (f"{name}, {os.cpu_count()} cores, {', '.join(flags) or 'no AVX2'}; torch kernels "
            f"{torch.backends.cpu.get_cpu_capability()}, native bf16 {'yes' if native_cpu_bf16() else 'no'}")


def _fast_dtype(device: torch.device) -> str:
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and native_cpu_bf16():
        return "bf16"
    return "fp32"


@dataclass(frozen=True)
class SpeedPlan:
    """What a preset runs on one device: autocast precisions and the detector's resize."""

    preset: str
    detector_precision: str = "fp32"
    encoder_precision: str = "fp32"
    detector_image_size: int | None = None
    detector_max_size: int | None = None
    detector: str = ""
    sam: str = ""
    decoder_precision: str = "fp32"  # SAM's mask decoder: bf16 only in ``realtime`` (masks move a little)

    def describe(self) -> str:
        """One line, e.g. ``'balanced: detector bf16, encoder bf16'``; recorded in the run settings."""
        size = f" @{self.detector_image_size}" if self.detector_image_size else ""
        detector = f" {self.detector}" if self.detector else ""
        sam = f" ({self.sam})" if self.sam else ""
        decoder = f", decoder {self.decoder_precision}" if self.decoder_precision != "fp32" else ""
        return (f"{self.preset}: detector{detector} {self.detector_precision}{size}, "
                f"encoder{sam} {self.encoder_precision}{decoder}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def speed_plan(preset: str = "balanced", device: str | torch.device = "cpu") -> SpeedPlan:
    """The :class:`SpeedPlan` of ``preset`` (``exact``, ``balanced``, ``fast`` or ``realtime``) on ``device``."""
    if preset not in SPEED_PRESETS:
        raise ValueError(f"speed must be one of {', '.join(SPEED_PRESETS)}; got {preset!r}")
    if preset == "exact":
        return SpeedPlan(preset)
    dtype = _fast_dtype(torch.device(device))
    size = FAST_IMAGE_SIZE if preset == "fast" else (None, None)
    return SpeedPlan(preset, dtype, dtype, detector_image_size=size[0], detector_max_size=size[1],
                     decoder_precision=dtype if preset == "realtime" else "fp32")


def autocast_dtype(precision: str) -> torch.dtype:
    """The torch dtype of ``precision`` (``'fp32'``, ``'bf16'`` or ``'fp16'``)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    return _DTYPES.get(precision, torch.float32)


def autocast(device: str | torch.device, precision: str = "fp32") -> ContextManager:
    """``torch.autocast`` to ``precision`` on ``device``'s type; a no-op for ``fp32``."""
    dtype = autocast_dtype(precision)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def cast_matmul_weights(model: torch.nn.Module, precision: str) -> int:
    """Store the Linear / Conv weights and biases of ``model`` in ``precision`` once; how many layers.

    Under :func:`autocast` to the same precision the outputs are identical (autocast casts these
    tensors anyway), but not re-cast on every call, and the float32 copies are freed.
    """
    dtype = autocast_dtype(precision)
    if precision == "fp32":
        return 0
    layers = [m for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d))]
    for layer in layers:
        for name in ("weight", "bias"):
            tensor = getattr(layer, name)
            if tensor is not None:
                tensor.data = tensor.data.to(dtype)
    return len(layers)


class AutocastModule(torch.nn.Module):
    """``module`` run under :func:`autocast` to ``precision``, its tensor output handed back as float32.

    Attributes the wrapper lacks (e.g. an encoder's ``img_size``) are read from ``module``.
    """

    def __init__(self, module: torch.nn.Module, precision: str):
        super().__init__()
        autocast("cpu", precision)  # checks the name
        self.module = module
        self.precision = precision

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        with autocast(x.device, self.precision):
            out = self.module(x, *args, **kwargs)
        return out.float()

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


def speed_plan_of(models: ModelOptions) -> SpeedPlan:
    """The :class:`SpeedPlan` that ``models.speed`` means on the device ``models`` runs on."""
    plan = speed_plan(models.speed, models.resolved_device())
    if models.speed == "realtime":  # the models it runs are part of the path a resumed run must match
        plan = replace(plan, detector=models.resolved_detector_model or "", sam=models.resolved_sam_model)
    return plan
