"""Every SAM of the zoo measured one way: encoder latency per path, decoder ms per box, params, MACs, peak memory.

Encoder paths, each timed on the same preprocessed photograph, or given the reason why it does not apply:

- ``eager``: the encoder as built, float32; every other path's embedding is compared with its embedding.
- ``fused``: RepViT's re-parameterization (Conv-BN and RepVGG-DW branches folded); RepViT-SAM and EdgeSAM only.
- ``channels_last``: the fused (where it applies) encoder in NHWC layout, as ``SamSegmenter`` runs it.
- ``bf16``: that under ``torch.autocast`` to bfloat16, where the CPU computes bf16 natively.
- ``onnxruntime``: the exported float graph.
- ``int8``: that graph quantized statically (:func:`~repvit_plugins.sam.quantize.int8_encoder`), calibrated on
  other photographs with the entry's own input side and pixel normalisation.

The decoder is the fast decoder on the entry's prompt side (boxes in one call, per box); parameters are the
encoder's as built, MACs those of the deployed (fused where it applies) encoder, counted on the meta device.
Weights are random: latency does not depend on them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from ..bench.boxes import random_boxes
from ..bench.memory import peak_rss_bytes
from ..bench.numeric_agreement import embedding_error, mean_mask_iou
from ..bench.timing import median_seconds

if TYPE_CHECKING:  # segment_anything ships no types: mypy sees its classes as Any
    from segment_anything.modeling import Sam

__all__ = ["PATHS", "ZooRun", "benchmark_boxes", "box_mask_iou", "encoder_paths", "markdown_table", "measure_entry",
           "on_embedding"]

PATHS = ("eager", "fused", "channels_last", "bf16", "onnxruntime", "int8")
MASK_CHECKED = ("bf16", "onnxruntime", "int8")
"""Paths whose box masks are also compared with eager's (the others give the same numbers up to float rounding)."""


@dataclass(frozen=True)
class ZooRun:
    """How one zoo measurement runs.

    Attributes:
        iters / warmup: timed and untimed encoder runs per path.
        decoder_iters: timed runs of the ``boxes``-box decoder call.
        boxes: boxes decoded in one call.
        tiny: measure :func:`~repvit_plugins.models.sam_registry.smoke_variant` models (a smoke run).
        skip: paths left out (``'onnxruntime'``, ``'int8'``, ...).
        work_dir: folder for the exported graphs (reused when present: their names hash the weights).
        own_process: the entry runs alone in its process, so its peak RSS means something.
    """

    iters: int = 3
    warmup: int = 1
    decoder_iters: int = 3
    boxes: int = 16
    tiny: bool = False
    skip: frozenset[str] = frozenset()
    work_dir: Path = Path(".")
    own_process: bool = True


@dataclass
class _Entry:
    sam: Sam
    image: torch.Tensor
    reference: torch.Tensor | None = None
    results: dict[str, Any] = field(default_factory=dict)


def benchmark_boxes(count: int, img_size: int) -> torch.Tensor:
    """``count`` random xyxy boxes in an ``img_size`` model frame, each at least 10% of it wide."""
    return random_boxes((img_size, img_size), count, torch.Generator().manual_seed(0))


def on_embedding(predictor, features: torch.Tensor, side: int):
    """``predictor`` (a ``SamPredictor``) set to decode ``features`` as the embedding of a ``side`` x ``side``
    image, so prompts in the model frame are decoded without running the encoder; returns it."""
    predictor.features = features
    predictor.is_image_set = True
    predictor.original_size = predictor.input_size = (side, side)
    return predictor


def box_mask_iou(sam: Sam, embedding: torch.Tensor, reference: torch.Tensor, boxes: torch.Tensor) -> float:
    """Mean IoU of the single-mask outputs for ``boxes`` decoded from two embeddings of one image."""
    from segment_anything import SamPredictor

    predictor, side = SamPredictor(sam), sam.image_encoder.img_size
    masks = [on_embedding(predictor, features, side).predict_torch(None, None, boxes, None, False)[0][:, 0].flatten(1)
             for features in (embedding, reference)]
    return mean_mask_iou(masks[0], masks[1])


def _build(name: str, tiny: bool) -> Sam:
    from ..models.sam_registry import build_sam, smoke_variant

    torch.manual_seed(0)
    if not tiny:
        return build_sam(name)
    size, encoder_args = smoke_variant(name)
    return build_sam(name, img_size=size, encoder_args=encoder_args)


def _time_path(entry: _Entry, path: str, run: ZooRun, encoder: nn.Module, x: torch.Tensor) -> None:
    """Time ``encoder(x)`` as ``path``; its embedding error (and box-mask IoU) against eager's."""
    last: list[torch.Tensor] = []

    def call() -> None:
        last[:] = [encoder(x)]

    with torch.inference_mode():
        seconds = median_seconds(call, run.iters, run.warmup)
    out = last[0]
    result: dict[str, Any] = {"s": seconds}
    if entry.reference is None:
        entry.reference = out
    else:
        result["error"] = embedding_error(out, entry.reference)
        if path in MASK_CHECKED:
            boxes = benchmark_boxes(run.boxes, entry.sam.image_encoder.img_size)
            result["mask_iou"] = box_mask_iou(entry.sam, out.float(), entry.reference, boxes)
    entry.results["paths"][path] = result


def _not_applicable(entry: _Entry, path: str, reason: str) -> None:
    entry.results["paths"][path] = {"reason": reason}


def _torch_paths(entry: _Entry, run: ZooRun) -> None:
    """eager, fused, channels_last and bf16, changing the model's encoder in place (no copies of a 2.5 GB ViT-H)."""
    from ..models.repvit import is_reparameterizable, reparameterize
    from ..runtime.speed import AutocastModule, native_cpu_bf16

    encoder, x = entry.sam.image_encoder, entry.image
    _time_path(entry, "eager", run, encoder, x)
    entry.results["peak_rss_mb"] = peak_rss_bytes() / 2 ** 20 if run.own_process else None
    if is_reparameterizable(encoder):
        _time_path(entry, "fused", run, reparameterize(encoder), x)
    else:
        _not_applicable(entry, "fused", "no RepViT blocks to re-parameterize (onnxruntime folds its Conv-BN pairs)")
    encoder.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
    _time_path(entry, "channels_last", run, encoder, x)
    if "bf16" in run.skip:
        _not_applicable(entry, "bf16", "skipped (--skip bf16)")
    elif native_cpu_bf16():
        _time_path(entry, "bf16", run, AutocastModule(encoder, "bf16"), x)
    else:
        _not_applicable(entry, "bf16", "this CPU has no native bf16 (AVX512-BF16 / AMX): emulated bf16 is slower "
                                       "than float32")


def _onnx_paths(entry: _Entry, run: ZooRun, calibration: list[np.ndarray]) -> None:
    """onnxruntime and int8: export (or reuse) the float graph, quantize it, time both."""
    import time

    from ..models.sam_parts import encoder_input_size
    from .onnx_export import export_encoder
    from .ort_backend import OrtImageEncoder
    from .quantize import int8_encoder
    from .segmenter import weights_digest

    sam = entry.sam  # graphs are named by their weights: same architecture and seed, one export
    stem = run.work_dir / f"sam_encoder_{weights_digest(sam.image_encoder)}"
    steps: dict[str, Callable[[Path], Path]] = {
        "onnxruntime": lambda dst: export_encoder(sam, dst),
        "int8": lambda dst: int8_encoder(sam, dst, calibration, float_onnx=f"{stem}.onnx"),
    }
    for path, make in steps.items():
        if path in run.skip or "onnxruntime" in run.skip:
            _not_applicable(entry, path, "skipped in this run")
            continue
        dst = Path(f"{stem}.onnx" if path == "onnxruntime" else f"{stem}.int8.onnx")
        try:
            if not dst.is_file():
                start = time.perf_counter()
                make(dst)
                entry.results[f"{path}_prepare_s"] = time.perf_counter() - start
            encoder = OrtImageEncoder(dst, sam.image_encoder.img_size, torch.get_num_threads(),
                                      input_size=encoder_input_size(sam.image_encoder))
        except Exception as err:  # noqa: BLE001 - a graph that cannot be made is a result, with its reason
            _not_applicable(entry, path, f"failed: {type(err).__name__}: {(str(err).splitlines() or [''])[0][:200]}")
            if path == "onnxruntime":
                _not_applicable(entry, "int8", "no float graph to quantize (the export failed)")
                return
            continue
        _time_path(entry, path, run, encoder, entry.image)
        del encoder  # its session's arena (3.7 GB for SAM ViT-B) is not needed while int8 calibrates


def encoder_paths(sam: Sam, image: torch.Tensor, run: ZooRun, calibration: list[np.ndarray],
                  results: dict[str, Any] | None = None) -> dict[str, Any]:
    """Time every encoder path of ``sam`` on the preprocessed ``image`` (``1 x 3 x S x S``), changing ``sam`` in place.

    Returns ``results`` with ``"paths"`` (in the order run: eager, fused, channels_last, bf16, onnxruntime, int8;
    each ``{"s", "error", "mask_iou"}`` or ``{"reason"}``), ``"peak_rss_mb"`` after eager and the ``*_prepare_s`` of
    the graphs made. ``calibration`` photographs calibrate int8.
    """
    entry = _Entry(sam, image, results={**(results or {}), "paths": {}})
    _torch_paths(entry, run)
    _onnx_paths(entry, run, calibration)
    return entry.results


def _decoder_ms_per_box(sam: Sam, run: ZooRun) -> float:
    from .predictor import FastSamPredictor

    grid = tuple(sam.prompt_encoder.image_embedding_size)
    features = torch.randn(1, sam.prompt_encoder.embed_dim, *grid, generator=torch.Generator().manual_seed(0))
    predictor = on_embedding(FastSamPredictor(sam, decoder="fast"), features, sam.image_encoder.img_size)
    boxes = benchmark_boxes(run.boxes, sam.image_encoder.img_size)
    with torch.inference_mode():
        seconds = median_seconds(lambda: predictor.predict_torch(None, None, boxes, None, False), run.decoder_iters, 1)
    return seconds / run.boxes * 1000


def measure_entry(name: str, photo: np.ndarray | None, calibration: list[np.ndarray], run: ZooRun) -> dict[str, Any]:
    """Every path of zoo entry ``name`` on ``photo`` (``H x W x 3`` uint8; random pixels when ``None``).

    Returns ``{"paths": {path: {"s", "error", "mask_iou"} or {"reason"}}, "params", "macs", "peak_rss_mb",
    "decoder_ms_per_box", ...}``.
    """
    from ..bench.complexity import count_macs, count_params
    from ..models.sam_parts import encoder_input_size
    from ..models.sam_registry import sam_model
    from .quantize import encoder_inputs, sam_normalization

    spec = sam_model(name)
    sam = _build(name, run.tiny)
    side = encoder_input_size(sam.image_encoder)
    if photo is None:
        photo = np.random.default_rng(0).integers(0, 256, (480, 640, 3), np.uint8)
    image = torch.from_numpy(encoder_inputs([photo], side, *sam_normalization(sam))[0])
    results = encoder_paths(sam, image, run, calibration or [photo], results={
        "family": spec.family, "img_size": sam.image_encoder.img_size, "input_size": side, "tiny": run.tiny,
        "params": count_params(sam.image_encoder), "zero_shot_coco_ap": spec.zero_shot_coco_ap})
    results["decoder_ms_per_box"] = _decoder_ms_per_box(sam, run)
    # the deployed (fused where it applies) encoder, counted without arithmetic on the meta device, last
    results["macs"] = count_macs(sam.image_encoder.to("meta"), (1, 3, side, side))
    results["paths"] = {path: results["paths"][path] for path in PATHS}
    return results


def _cell(result: Mapping[str, Any]) -> str:
    if "reason" in result:
        return "n/a" if not result["reason"].startswith("failed") else "failed"
    seconds = result["s"]
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1000:.0f} ms"


def markdown_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """One row per entry: params, GMACs, encoder latency per path, int8 agreement, decoder, peak RSS, published AP."""
    header = ["model", "input", "params", "GMACs", *PATHS, "int8 error / mask IoU", "decoder ms/box", "peak RSS",
              "COCO AP (published)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, r in results.items():
        int8 = r["paths"]["int8"]
        agreement = f"{int8['error']:.1e} / {int8['mask_iou']:.3f}" if "error" in int8 else "-"
        rss = f"{r['peak_rss_mb'] / 1024:.1f} GB" if r.get("peak_rss_mb") else "-"
        ap = f"{r['zero_shot_coco_ap']}" if r.get("zero_shot_coco_ap") else "-"
        cells = [f"`{name}`", str(r["input_size"]), f"{r['params'] / 1e6:.1f} M", f"{r['macs'] / 1e9:.1f}",
                 *(_cell(r["paths"][p]) for p in PATHS), agreement, f"{r['decoder_ms_per_box']:.0f}", rss, ap]
        lines.append("| " + " | ".join(cells) + " |")
    reasons = {(p, r["paths"][p]["reason"]) for r in results.values() for p in PATHS if "reason" in r["paths"][p]}
    lines += ["", *(f"- {path} n/a: {reason}" for path, reason in sorted(reasons))] if reasons else []
    return "\n".join(lines)
