"""Static int8 quantization of an exported SAM image encoder (onnxruntime QDQ).

Weights are quantized per output channel (int8), activations per tensor (uint8)
with ranges calibrated on real images, preprocessed exactly as ``SamPredictor``
does. The first convolution (it reads normalized pixels) and the last two (the
neck that writes the embedding) stay in float: quantizing them doubles the
embedding error for no measurable speed.

onnxruntime's dynamic quantization (``ConvInteger``) is *slower* than float32 on
x86 CPUs; the static QDQ graph runs as ``QLinearConv`` with the integer kernels.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..quiet import quietly

__all__ = ["encoder_inputs", "quantize_encoder_int8", "FLOAT_CONVS_AT_START", "FLOAT_CONVS_AT_END"]

FLOAT_CONVS_AT_START = 1
FLOAT_CONVS_AT_END = 2


def encoder_inputs(images: Iterable[np.ndarray], img_size: int) -> list[np.ndarray]:
    """``1 x 3 x S x S`` float32 encoder inputs for ``H x W x 3`` uint8 RGB images (resize, normalize, pad)."""
    from segment_anything.utils.transforms import ResizeLongestSide

    from ..models.sam_parts import SAM_PIXEL_MEAN, SAM_PIXEL_STD
    from .prompts import check_image

    transform = ResizeLongestSide(img_size)
    mean, std = np.asarray(SAM_PIXEL_MEAN, np.float32), np.asarray(SAM_PIXEL_STD, np.float32)
    inputs = []
    for image in images:
        resized = transform.apply_image(check_image(image))
        padded = np.zeros((img_size, img_size, 3), np.float32)
        padded[: resized.shape[0], : resized.shape[1]] = (resized.astype(np.float32) - mean) / std
        inputs.append(np.ascontiguousarray(padded.transpose(2, 0, 1)[None]))
    return inputs


def _encoder_input(model) -> tuple[str, int]:
    graph_input = model.graph.input[0]
    side = graph_input.type.tensor_type.shape.dim[-1].dim_value
    return graph_input.name, int(side)


def quantize_encoder_int8(src: str | os.PathLike, dst: str | os.PathLike,
                          calibration_images: Sequence[np.ndarray]) -> Path:
    """Write a static int8 (QDQ) copy of the encoder ONNX file ``src`` to ``dst``.

    Args:
        src: float encoder graph from :func:`~repvit_plugins.sam.onnx_export.export_encoder`.
        dst: where the int8 graph goes.
        calibration_images: ``H x W x 3`` uint8 RGB images like the ones the model will see
            (a handful is enough; each costs one float forward pass).
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(calibration_images) == 0:
        raise ValueError("int8 calibration needs at least one image (H x W x 3 uint8 RGB)")
    model = onnx.load(str(src), load_external_data=False)
    name, side = _encoder_input(model)
    convs = [node.name for node in model.graph.node if node.op_type == "Conv"]
    keep_float = convs[:FLOAT_CONVS_AT_START] + convs[len(convs) - FLOAT_CONVS_AT_END:]
    feeds = [{name: x} for x in encoder_inputs(calibration_images, side)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._feeds = iter(feeds)

        def get_next(self):
            return next(self._feeds, None)

    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, quietly(root_logger=True):
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        partial = dst.with_name(dst.name + ".part")  # same folder: the rename below is atomic
        quantize_static(str(prepared), str(partial), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=keep_float)
        os.replace(partial, dst)
    return dst
