"""Static int8 quantization of an exported SAM image encoder (onnxruntime QDQ), for every encoder of the zoo.

Weights are quantized per output channel (int8), activations per tensor (uint8)
with ranges calibrated on real images, preprocessed exactly as the model's
predictor does: resized to the side the graph sees (1024, or 512 for
EfficientViT-SAM L), normalized with the model's own pixel mean and std, padded.
Only the operators that carry weights (``Conv``, ``MatMul``, ``Gemm``) are
quantized; additions, norms, softmax and activations stay in float. The first
convolution (it reads normalized pixels) and the last two (the neck that writes
the embedding) stay in float too: quantizing them doubles the embedding error for
no measurable speed.

onnxruntime's dynamic quantization (``ConvInteger``) is *slower* than float32 on
x86 CPUs; the static QDQ graph runs as ``QLinearConv`` / ``QLinearMatMul`` with the integer kernels.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TypeVar

import numpy as np

from ..models.sam_parts import SAM_PIXEL_MEAN, SAM_PIXEL_STD
from ..runtime.quiet import quietly

T = TypeVar("T")

__all__ = ["encoder_inputs", "int8_encoder", "quantize_encoder_int8", "quantize_static_int8", "sam_normalization",
           "FLOAT_CONVS_AT_START", "FLOAT_CONVS_AT_END", "QUANTIZED_OPS"]

FLOAT_CONVS_AT_START = 1
FLOAT_CONVS_AT_END = 2
QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")
"""Operators that are quantized: the ones with weights. onnxruntime's default (every operator it can quantize,
residual additions, LayerNorm and Softmax included) gave 2-5x the embedding error on the transformer encoders
(random-weight SAM ViT-B at 256: 7.2e-2 vs 1.5e-2 of the embedding std; EfficientViT-SAM L0 3.2e-2 vs 1.3e-2) and
1.3x on RepViT-SAM, at the same int8 latency (RepViT-SAM at 1024, one thread: 0.67 s vs 0.66 s)."""


def encoder_inputs(images: Iterable[np.ndarray], img_size: int, pixel_mean: Sequence[float] = SAM_PIXEL_MEAN,
                   pixel_std: Sequence[float] = SAM_PIXEL_STD) -> list[np.ndarray]:
    """``1 x 3 x S x S`` float32 encoder inputs for ``H x W x 3`` uint8 RGB images (resize, normalize, pad)."""
    from segment_anything.utils.transforms import ResizeLongestSide

    from .prompts import check_image

    transform = ResizeLongestSide(img_size)
    mean, std = np.asarray(pixel_mean, np.float32), np.asarray(pixel_std, np.float32)
    inputs = []
    for image in images:
        resized = transform.apply_image(check_image(image))
        padded = np.zeros((img_size, img_size, 3), np.float32)
        padded[: resized.shape[0], : resized.shape[1]] = (resized.astype(np.float32) - mean) / std
        inputs.append(np.ascontiguousarray(padded.transpose(2, 0, 1)[None]))
    return inputs


def sam_normalization(sam) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(pixel_mean, pixel_std)`` of a ``Sam`` (the registry entry's normalisation)."""
    return tuple(sam.pixel_mean.flatten().tolist()), tuple(sam.pixel_std.flatten().tolist())


def _encoder_input(model) -> tuple[str, int]:
    graph_input = model.graph.input[0]
    side = graph_input.type.tensor_type.shape.dim[-1].dim_value
    return graph_input.name, int(side)


def _has_external_data(model) -> bool:
    """Whether the graph keeps its weights in a side file (encoders over ONNX's 2 GB limit, e.g. SAM ViT-H)."""
    from onnx.external_data_helper import uses_external_data

    return any(uses_external_data(tensor) for tensor in model.graph.initializer)


class _Feeds:
    """onnxruntime's ``CalibrationDataReader`` protocol over a list of input dicts."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self._feeds = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def _calibrate(prepared: Path, feeds: list[dict[str, np.ndarray]], tmp: Path, large: bool) -> Path:
    """MinMax activation ranges of the inputs of :data:`QUANTIZED_OPS`, saved as onnxruntime's calibration cache.

    onnxruntime's own calibration session keeps its memory arena: on SAM ViT-B at 1024 it grew by about 5 GB per
    image (over 22 GB for three, killed), against 12 GB flat without the arena (same ranges).
    """
    import onnxruntime as ort
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator, save_tensors_data

    calibrator = create_calibrator(prepared, list(QUANTIZED_OPS), augmented_model_path=str(tmp / "augmented.onnx"),
                                   calibrate_method=CalibrationMethod.MinMax, use_external_data_format=large)
    del calibrator.infer_session  # replaced by one without the arena
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # as onnxruntime's calibrator
    options.enable_cpu_mem_arena = False
    options.enable_mem_pattern = False
    calibrator.infer_session = ort.InferenceSession(calibrator.augmented_model_path, options,
                                                    providers=["CPUExecutionProvider"])
    calibrator.collect_data(_Feeds(feeds))
    cache = tmp / "ranges.json"
    save_tensors_data(calibrator.compute_data(), cache)
    return cache


def _answer(conn, fn: Callable[..., Any], args: tuple) -> None:
    try:
        conn.send((True, fn(*args)))
    except BaseException as err:  # noqa: BLE001 - handed to the parent, which raises it
        conn.send((False, err))
    finally:
        conn.close()


def run_in_child(fn: Callable[..., T], *args: Any, what: str) -> T:
    """``fn(*args)`` in a child process (its memory goes back to the system when it ends); its errors are raised here.

    The kernel's out-of-memory killer ends the biggest process, which is the child: the caller gets a
    :class:`MemoryError` that says what was being done and what to try, instead of dying itself. The child is
    forked where the system can (no re-import of the caller's script), else spawned.
    """
    import multiprocessing
    import signal

    fork = "fork" in multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork") if fork else multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_answer, args=(send, fn, args), daemon=True)
    child.start()
    send.close()
    try:
        ok, value = receive.recv()
    except EOFError:  # it died without answering
        child.join()
        if child.exitcode == -signal.SIGKILL:
            raise MemoryError(
                f"{what} was killed (SIGKILL), most likely for lack of memory: one calibration pass of SAM ViT-B at "
                "1024 takes 12 GB and the larger ViTs need more. Use a machine with more memory, or the float32 / "
                "bf16 encoder.") from None
        raise RuntimeError(f"{what} died with exit code {child.exitcode} before it finished") from None
    child.join()
    if not ok:
        raise value
    return value


def quantize_encoder_int8(src: str | os.PathLike, dst: str | os.PathLike, calibration_images: Sequence[np.ndarray],
                          *, pixel_mean: Sequence[float] = SAM_PIXEL_MEAN,
                          pixel_std: Sequence[float] = SAM_PIXEL_STD) -> Path:
    """Write a static int8 (QDQ) copy of the encoder ONNX file ``src`` to ``dst`` (one self-contained file).

    Args:
        src: float encoder graph from :func:`~repvit_plugins.sam.onnx_export.export_encoder` (weights in a side
            file are read too).
        dst: where the int8 graph goes.
        calibration_images: ``H x W x 3`` uint8 RGB images like the ones the model will see
            (a handful is enough; each costs one float forward pass).
        pixel_mean, pixel_std: the model's pixel normalisation (:func:`sam_normalization`); the input side is
            read from the graph.
    """
    import onnx

    if len(calibration_images) == 0:
        raise ValueError("int8 calibration needs at least one image (H x W x 3 uint8 RGB)")
    model = onnx.load(str(src), load_external_data=False)
    name, side = _encoder_input(model)
    convs = [node.name for node in model.graph.node if node.op_type == "Conv"]
    keep_float = convs[:FLOAT_CONVS_AT_START] + convs[len(convs) - FLOAT_CONVS_AT_END:]
    feeds = [{name: x} for x in encoder_inputs(calibration_images, side, pixel_mean, pixel_std)]
    del model
    return quantize_static_int8(src, dst, feeds, keep_float=keep_float)


def quantize_static_int8(src: str | os.PathLike, dst: str | os.PathLike, feeds: Sequence[dict[str, np.ndarray]],
                         *, keep_float: Sequence[str] = ()) -> Path:
    """Write a static int8 (QDQ) copy of any float graph ``src`` to ``dst`` (one self-contained file).

    Args:
        feeds: calibration inputs (name -> array), preprocessed exactly as the model will see them.
        keep_float: names of nodes left in float (e.g. the convolutions that read pixels or write outputs).
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(feeds) == 0:
        raise ValueError("int8 calibration needs at least one input")
    large = _has_external_data(onnx.load(str(src), load_external_data=False))
    feeds = list(feeds)

    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, quietly(root_logger=True):
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True, save_as_external_data=large)
        ranges = run_in_child(_calibrate, prepared, feeds, Path(tmp), large,
                              what=f"int8 calibration of {src}")
        quantize_static(str(prepared), str(quantized), None, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibration_cache_path=str(ranges), nodes_to_exclude=list(keep_float),
                        op_types_to_quantize=list(QUANTIZED_OPS), use_external_data_format=large)
        partial = dst.with_name(dst.name + ".part")  # same folder: the rename below is atomic
        if large:  # int8 weights are a quarter of the float ones: back into one file
            onnx.save(onnx.load(str(quantized)), str(partial))
        else:
            shutil.move(str(quantized), partial)
        os.replace(partial, dst)
    return dst


def int8_encoder(sam, dst: str | os.PathLike, calibration_images: Sequence[np.ndarray],
                 float_onnx: str | os.PathLike | None = None) -> Path:
    """A static int8 encoder graph of any zoo ``Sam`` at ``dst``: its float graph (``float_onnx``, else exported
    next to ``dst``) quantized with the model's own pixel normalisation, at the side the graph sees."""
    from .onnx_export import export_encoder

    dst = Path(dst)
    if float_onnx is None:
        float_onnx = export_encoder(sam, dst.with_name(dst.stem + ".float.onnx"))
    mean, std = sam_normalization(sam)
    return quantize_encoder_int8(float_onnx, dst, calibration_images, pixel_mean=mean, pixel_std=std)
