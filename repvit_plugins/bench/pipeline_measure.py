"""One benchmark path measured in its own process: the real :class:`GroundedSAM` timed by its stage hook.

Each path builds the detector and segmenter the way the library does (``build_detector`` + ``SamSegmenter``) and
runs ``GroundedSAM.predict_batch`` with a :class:`StageTimer` (stages ``detect``, ``encoder``, ``decoder``,
``masks``); the benchmark adds ``load`` (``io.load_image``) and ``write`` (annotated JPEG and COCO JSON, written
atomically as the labelling job writes them).
"""
from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..runtime.stage_timer import StageTimer
from .memory import peak_rss_bytes
from .pipeline_paths import GROUNDING_DINO_PATHS, PathSpec, sam_size, slug

__all__ = ["STAGES", "measure"]

STAGES = ("load", "detect", "encoder", "decoder", "masks", "write")
"""The stages of an image, in order; they add up to its time."""


class _PerBoxSegmenter:
    """segment_anything's SamPredictor as Grounded-SAM uses it: one ``predict`` call per box."""

    def __init__(self, sam: torch.nn.Module):
        from segment_anything import SamPredictor

        self.predictor = SamPredictor(sam)

    def set_image(self, image: np.ndarray) -> None:
        self.predictor.set_image(image)

    def predict_boxes(self, boxes: np.ndarray, multimask_output: bool = False) -> tuple[np.ndarray, np.ndarray]:
        h, w = self.predictor.original_size
        masks, scores = [np.zeros((0, h, w), bool)], [np.zeros(0, np.float32)]
        for box in boxes:
            mask, score, _ = self.predictor.predict(box=box, multimask_output=multimask_output)
            masks.append(mask)
            scores.append(score)
        return np.concatenate(masks), np.concatenate(scores)


def _detector(spec: PathSpec, args: argparse.Namespace):
    """The path's detector, built by the library, with the path's runtime swapped in."""
    from ..grounding import build_detector
    from ..grounding.random_backends import backend_detector_arguments

    saved = backend_detector_arguments(args.detector_model)  # a groundingdino-py / mmdet model folder
    if saved is not None:
        return build_detector(saved.pop("backend"), precision=spec.detector_precision, **saved)
    extras: dict[str, Any] = {"image_size": spec.detector_image_size, "max_size": spec.detector_max_size,
                              "fast_attention": False if spec.stock_attention else None}
    # a transformers detector: its .model (swapped below) is not part of the GroundingDetector interface
    detector: Any = build_detector("hf", model=args.detector_model, precision=spec.detector_precision,
                                   **{k: v for k, v in extras.items() if v is not None})
    if spec.detector_runtime == "torch-int8":
        detector.model = torch.ao.quantization.quantize_dynamic(detector.model, {torch.nn.Linear}, dtype=torch.qint8)
    elif spec.detector_runtime.startswith("onnxruntime"):
        from ..grounding.onnx_runtime import OnnxRuntimeGroundingDino

        detector.model = OnnxRuntimeGroundingDino(detector.model, Path(args.work_dir) / "onnx",
                                                  int8=spec.detector_runtime.endswith("int8"), threads=args.threads)
    elif spec.detector_runtime == "compile":
        detector.model = torch.compile(detector.model)
    return detector


def _segmenter(spec: PathSpec, args: argparse.Namespace):
    from ..models.sam_registry import build_sam
    from ..sam import SamSegmenter

    sam = build_sam(args.sam_model, args.sam_checkpoint, img_size=sam_size(args.sam_model, args.sam_image_size))
    if spec.grounded_sam_style:
        return _PerBoxSegmenter(sam)
    return SamSegmenter(sam, precision=spec.encoder_precision, decoder_precision=spec.decoder_precision, cache_size=0)


def _raw_outputs(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The last raw ``logits`` / ``pred_boxes`` of ``model``, kept by a forward hook (for the agreement)."""
    last: dict[str, torch.Tensor] = {}

    def keep(module, inputs, outputs) -> None:
        last.update(logits=outputs.logits[0].detach().float(), boxes=outputs.pred_boxes[0].detach().float())
    model.register_forward_hook(keep)
    return last


def _write(image: np.ndarray, detections, stem: Path) -> None:
    """The annotated JPEG (encoded as the job encodes it) and COCO RLE JSON of one image, written atomically."""
    from ..exporters.coco import coco_annotations
    from ..io.atomic import atomic_write_bytes, atomic_write_text
    from ..jobs.labeler import encode_jpeg
    from ..visualize import annotate

    atomic_write_bytes(stem.with_suffix(".jpg"), encode_jpeg(annotate(image, detections)))
    atomic_write_text(stem.with_suffix(".json"), json.dumps(coco_annotations(detections, 0)))


def _packed(masks: np.ndarray) -> np.ndarray:
    return np.packbits(np.asarray(masks, dtype=bool), axis=-1)


class _Failed(Exception):
    def __init__(self, stage: str):
        self.stage = stage


def _pipeline(spec: PathSpec, args: argparse.Namespace, timer: StageTimer, peer: Callable[..., Any] | None):
    """``run(image) -> Detections`` of the path (timed by ``timer``) and its segmenter (or ``None``)."""
    from ..grounding.pipeline import GroundedSAM, ImageFailure, attach_masks
    from ..options import PipelineOptions

    options = PipelineOptions(box_threshold=args.box_threshold, text_threshold=args.text_threshold,
                              max_detections=args.max_detections)
    if spec.peer:
        from ..grounding.prompts import parse_prompt

        if peer is None:
            raise ValueError(f"path {spec.name!r} runs the peer model {spec.peer!r}: pass its builder as peer=")
        model = peer(str(spec.peer), parse_prompt(args.prompt), max_detections=args.max_detections,
                     conf=args.box_threshold)

        def run_peer(image: np.ndarray):
            with timer.stage("detect"):
                found = model.predict(image)
            with timer.stage("masks"):
                return attach_masks(found, found.mask, found.confidence, options)
        return run_peer, None, {}
    detector, segmenter = _detector(spec, args), _segmenter(spec, args)
    raw = _raw_outputs(detector.model) if spec.name in GROUNDING_DINO_PATHS else {}
    pipeline = GroundedSAM(detector, segmenter, options, timer=timer)

    def run(image: np.ndarray):
        segmenter.predictor.reset_image()  # the warm-up saw this image: embed it again
        result = pipeline.predict_batch([image], args.prompt)[0]
        if isinstance(result, ImageFailure):
            raise _Failed(result.stage) from result.error
        return result
    return run, segmenter, raw


def measure(spec: PathSpec, args: argparse.Namespace, work: Path, peer: Callable[..., Any] | None = None) -> dict:
    """Run ``spec`` over the images; stage times, RSS and the outputs the agreement needs (saved in ``work``).

    An image that fails in any stage is reported (path and stage) and skipped; the others go on. ``peer`` builds
    the peer model of a peer path (the library never imports one).
    """
    from ..io import iter_image_paths, load_image

    timer = StageTimer()
    run, segmenter, raw = _pipeline(spec, args, timer, peer)
    paths = iter_image_paths(args.images)
    out = work / "outputs" / slug(spec.name)
    out.mkdir(parents=True, exist_ok=True)
    reference_file = work / "exact.npz"
    comparable = spec.name in GROUNDING_DINO_PATHS and spec.name != "exact"
    reference = dict(np.load(reference_file)) if comparable and reference_file.is_file() else None
    timed, saved, failures = [], {}, []
    for index, path in [(None, path) for path in paths] * args.warmup + list(enumerate(paths)):
        timer.take()
        stage = "loading"
        try:
            with timer.stage("load"):
                image = load_image(path)
            stage = "detection"
            found = run(image)
            stage = "writing"
            with timer.stage("write"):
                _write(image, found, out / str(index or 0))
        except Exception as err:  # noqa: BLE001 - reported and skipped, as the job does
            if index is not None:
                failures.append({"path": str(path), "stage": err.stage if isinstance(err, _Failed) else stage})
            continue
        if index is None:
            continue
        timed.append(timer.take())
        saved.update({f"xyxy{index}": found.xyxy, f"masks{index}": _packed(found.mask)})
        if raw:
            saved.update({f"logits{index}": raw["logits"].numpy(), f"boxes{index}": raw["boxes"].numpy()})
        if reference is not None and f"xyxy{index}" in reference:  # the segmentation path alone, on exact's boxes
            on_ref, _ = segmenter.predict_boxes(reference[f"xyxy{index}"])
            saved[f"masks_on_exact{index}"] = _packed(on_ref)
    np.savez_compressed(work / f"{slug(spec.name)}.npz", **saved)
    if not timed:
        raise RuntimeError(f"every image failed: {failures}")
    totals = [sum(t.values()) for t in timed]
    return {"spec": asdict(spec), "images": len(timed), "failures": failures,
            "stages": {s: statistics.median(t.get(s, 0.0) for t in timed) for s in STAGES if s in timed[0]},
            "seconds_per_image": statistics.median(totals), "seconds_per_image_mean": statistics.fmean(totals),
            "boxes_per_image": statistics.median(len(v) for k, v in saved.items() if k.startswith("xyxy")),
            "peak_rss_gb": peak_rss_bytes() / 2 ** 30}
