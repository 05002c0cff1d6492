"""onnxruntime sessions standing in for SAM's image encoder and prompt decoder.

:class:`OrtImageEncoder` is an ``nn.Module`` with ``img_size``, so a ``Sam``
built around it works with ``SamPredictor`` and ``SamAutomaticMaskGenerator``
unchanged. :class:`OrtPromptDecoder` runs the decoder graph of
:mod:`repvit_plugins.sam.onnx_export`.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = ["create_session", "OrtImageEncoder", "OrtPromptDecoder"]


def create_session(path: str | os.PathLike, threads: int | None = None, providers: list[str] | None = None,
                   config: dict[str, str] | None = None):
    """An ``onnxruntime.InferenceSession`` with full graph optimization and ``threads`` intra-op threads
    (``config``: extra session config entries, e.g. ``{"session.intra_op.allow_spinning": "0"}``)."""
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise ImportError("backend='onnxruntime' needs onnxruntime: pip install onnxruntime") from err
    if not Path(path).is_file():
        raise FileNotFoundError(f"no ONNX model at {path}; export one with tools/export_onnx.py")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    for key, value in (config or {}).items():
        options.add_session_config_entry(key, value)
    available = ort.get_available_providers()
    chosen = [p for p in (providers or ["CPUExecutionProvider"]) if p in available] or ["CPUExecutionProvider"]
    return ort.InferenceSession(str(path), options, providers=chosen)


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to("cpu", torch.float32).contiguous().numpy()


class OrtImageEncoder(nn.Module):
    """SAM image encoder backed by onnxruntime: ``forward(1x3xSxS) -> 1xCxhxw``.

    Args:
        path: encoder ONNX file (``export_encoder``).
        img_size: the model's square input frame (prompts, masks).
        threads: onnxruntime intra-op threads (default: torch's thread count).
        input_size: the side the graph sees, when the encoder sees the image at its own size (EfficientViT-SAM L).
    """

    def __init__(self, path: str | os.PathLike, img_size: int = 1024, threads: int | None = None,
                 input_size: int | None = None):
        super().__init__()
        self.path = Path(path)
        self.img_size = img_size
        if input_size is not None:
            self.input_size = input_size
        self.session = create_session(path, threads)
        side = self.session.get_inputs()[0].shape[-1]
        if side != (input_size or img_size):
            raise ValueError(f"{path} was exported for {side}x{side} inputs, not {input_size or img_size}; "
                             "re-export it")

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [self.session.run(None, {"image": _numpy(x[i:i + 1])})[0] for i in range(x.shape[0])]
        return torch.from_numpy(np.concatenate(outputs)).to(x.device)


class OrtPromptDecoder:
    """Prompt encoder + mask decoder backed by onnxruntime (``export_decoder`` graph)."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        self.path = Path(path)
        self.session = create_session(path, threads)

    def __call__(self, feeds: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``feeds`` from :func:`~repvit_plugins.sam.decoder_inputs.decoder_feeds` -> (low-res logits, IoU).

        Both hold all 4 mask tokens (the single-mask output first).
        """
        masks, iou = self.session.run(None, {k: _numpy(v) for k, v in feeds.items()})
        return torch.from_numpy(masks), torch.from_numpy(iou)
