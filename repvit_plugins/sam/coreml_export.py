"""Core ML (``.mlpackage``) conversion of a SAM, as the official RepViT repository does.

The fused image encoder and the prompt encoder + mask decoder
(:class:`~repvit_plugins.sam.onnx_export.PromptDecoder`, the ONNX decoder's inputs)
are captured with ``torch.export`` and converted with ``coremltools``, an optional
extra (``pip install coremltools``). Conversion runs on Linux; the packages run on
macOS / iOS only.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from .onnx_export import PromptDecoder, fused_encoder

if TYPE_CHECKING:  # segment_anything ships no types: mypy sees its classes as Any
    from segment_anything.modeling import Sam

__all__ = ["PRECISIONS", "require_coremltools", "convert_encoder", "convert_decoder"]

PRECISIONS = ("fp16", "fp32")
_MISSING = ("coremltools is not installed, so nothing was converted. Install the optional extra with\n"
            "  pip install coremltools\n"
            "(conversion works on Linux; the .mlpackage files run on macOS / iOS). "
            "For a runtime on this machine use tools/export_onnx.py.")


def require_coremltools():
    """The ``coremltools`` module; an ``ImportError`` that says how to install it when it is missing."""
    try:
        import coremltools
    except ImportError as err:
        raise ImportError(_MISSING) from err
    return coremltools


def _convert(module: nn.Module, example: tuple, dynamic_shapes, precision: str, path: str | os.PathLike) -> Path:
    """torch.export -> Core ML ML program saved at ``path`` (coremltools' TorchScript path fails on recent torch)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    ct = require_coremltools()
    compute = ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32
    with torch.no_grad():
        program = torch.export.export(module.eval(), example, dynamic_shapes=dynamic_shapes).run_decompositions({})
        package = ct.convert(program, convert_to="mlprogram", compute_precision=compute)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    package.save(str(path))
    return path


def convert_encoder(sam: Sam, path: str | os.PathLike, precision: str = "fp16") -> Path:
    """Convert the fused image encoder (input ``1 x 3 x S x S``, preprocessed as ``Sam.preprocess``)."""
    size = sam.image_encoder.img_size
    return _convert(fused_encoder(sam), (torch.rand(1, 3, size, size),), None, precision, path)


def convert_decoder(sam: Sam, path: str | os.PathLike, precision: str = "fp16", max_points: int = 16) -> Path:
    """Convert the decoder: inputs as the ONNX decoder, one prompt of 1 to ``max_points`` points (box corners 2, 3)."""
    from torch.export import Dim

    grid = sam.prompt_encoder.image_embedding_size
    size = sam.image_encoder.img_size
    example = (torch.randn(1, sam.prompt_encoder.embed_dim, *grid), torch.rand(1, 2, 2) * size,
               torch.tensor([[2.0, 3.0]]), torch.zeros(1, 1, 4 * grid[0], 4 * grid[1]), torch.zeros(1))
    points = Dim("num_points", min=1, max=max_points)
    dynamic = (None, {1: points}, {1: points}, None, None)
    return _convert(PromptDecoder(sam), example, dynamic, precision, path)
