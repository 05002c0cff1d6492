"""transformers' Grounding DINO run by onnxruntime, float32 or dynamic int8: one traced graph per input shape.

A measured alternative to the torch paths (``tools/benchmark_pipeline.py --paths onnx onnx-int8``), not a preset:
on the CPUs measured it lost to torch (docs/speed.md). Why one graph per shape: ``torch.export`` (and so the
dynamo ONNX exporter) stops at the text masks, which transformers builds with data-dependent loops over the
prompt's special tokens, and the TorchScript trace records Swin's window padding and the feature-map sizes as
constants. So a graph is traced the first time a (batch, height, width, text length) is seen (about 25 s for
grounding-dino-tiny on 2 cores, untimed in the benchmark's warm-up) and cached in a folder under that shape and
a fingerprint of the weights. The export needs transformers' own deformable attention (``grid_sample`` becomes
ONNX ``GridSample``); the gather-based one has no efficient ONNX form.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from ..runtime.quiet import quietly
from ..sam.ort_backend import create_session
from ..sam.segmenter import weights_digest
from .deformable_attention import FastMultiScaleDeformableAttention

__all__ = ["OnnxRuntimeGroundingDino"]

_INPUTS = ("pixel_values", "pixel_mask", "input_ids", "token_type_ids", "attention_mask")
_OPSET = 17  # GridSample needs 16


class _Traced(nn.Module):
    """The model with positional inputs and ``(logits, pred_boxes)`` out, as the exporter wants it."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = self.model(**dict(zip(_INPUTS, inputs)))
        return outputs.logits, outputs.pred_boxes


class OnnxRuntimeGroundingDino(nn.Module):
    """Stands in for a ``GroundingDinoForObjectDetection`` (same keyword inputs, ``.logits`` / ``.pred_boxes`` out).

    Args:
        model: the float32 transformers model, with its own deformable attention.
        folder: where the graphs are cached (one file per input shape).
        int8: quantize each graph's MatMul / Gemm weights to int8 (onnxruntime ``quantize_dynamic``;
            activations are quantized on the fly, per tensor).
        threads: onnxruntime intra-op threads (default: torch's).
    """

    def __init__(self, model: nn.Module, folder: str | os.PathLike, *, int8: bool = False,
                 threads: int | None = None):
        super().__init__()
        if any(isinstance(m, FastMultiScaleDeformableAttention) for m in model.modules()):
            raise ValueError("the ONNX export needs transformers' own deformable attention: build the detector "
                             "with build_detector('hf', ..., fast_attention=False)")
        if any(p.dtype != torch.float32 for p in model.parameters()):
            raise ValueError("the ONNX export needs the float32 model (precision='fp32')")
        self.model = model.eval()
        self.int8 = int8
        self.threads = threads or torch.get_num_threads()
        self.folder = Path(folder) / f"grounding_dino_{weights_digest(model)}"  # other weights, other graphs
        self._sessions: dict[tuple[int, ...], object] = {}

    def graph_path(self, shape: tuple[int, ...], int8: bool | None = None) -> Path:
        """The cached graph of a ``(batch, height, width, text length)`` input (int8: this model's, by default)."""
        batch, height, width, text = shape
        int8 = self.int8 if int8 is None else int8
        return self.folder / f"b{batch}_{height}x{width}_t{text}{'.int8' if int8 else ''}.onnx"

    def _export(self, inputs: tuple[torch.Tensor, ...], path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.stem + ".part.onnx")
        with torch.no_grad(), warnings.catch_warnings(), quietly(root_logger=True):
            warnings.simplefilter("ignore")  # TracerWarnings: the shapes are meant to be fixed
            torch.onnx.export(_Traced(self.model), inputs, str(partial), dynamo=False, opset_version=_OPSET,
                              input_names=list(_INPUTS), output_names=["logits", "pred_boxes"])
        os.replace(partial, path)

    def _quantize(self, src: Path, dst: Path) -> None:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        partial = dst.with_name(dst.stem + ".part.onnx")
        with quietly(root_logger=True):
            quantize_dynamic(str(src), str(partial), op_types_to_quantize=["MatMul", "Gemm"],
                             weight_type=QuantType.QInt8)
        os.replace(partial, dst)

    def session(self, inputs: tuple[torch.Tensor, ...]):
        """The onnxruntime session for the shape of ``inputs`` (traced and quantized on first use)."""
        shape = (*inputs[0].shape[:1], *inputs[0].shape[2:], inputs[2].shape[1])
        if shape not in self._sessions:
            path = self.graph_path(shape)
            if not path.is_file():
                float_path = self.graph_path(shape, int8=False)
                if not float_path.is_file():
                    self._export(inputs, float_path)
                if self.int8:
                    self._quantize(float_path, path)
            self._sessions[shape] = create_session(path, self.threads)
        return self._sessions[shape]

    def forward(self, **kwargs: torch.Tensor) -> SimpleNamespace:
        missing = set(_INPUTS) - set(kwargs)
        if missing:
            raise ValueError(f"missing inputs: {', '.join(sorted(missing))}")
        inputs = tuple(kwargs[name].cpu() for name in _INPUTS)
        feeds = {name: np.ascontiguousarray(t.numpy()) for name, t in zip(_INPUTS, inputs)}
        logits, boxes = self.session(inputs).run(None, feeds)
        return SimpleNamespace(logits=torch.from_numpy(logits), pred_boxes=torch.from_numpy(boxes))
