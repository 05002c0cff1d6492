"""The paths of the end-to-end pipeline benchmark (``tools/benchmark_pipeline.py``): what each runs, on which models.

A path is a detector configuration plus a SAM (or a peer model that does both); the presets resolve on the
measuring machine (:mod:`repvit_plugins.runtime.speed`). Without given weights each path gets full-size random
models, built once in the work folder.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..grounding.detector_zoo import DETECTORS, REALTIME_DETECTOR
from ..options import REALTIME_SAM

__all__ = ["DEFAULT_PATHS", "GROUNDING_DINO_PATHS", "NOT_BY_DEFAULT", "PATHS", "PEER_PATHS", "PathModels", "PathSpec",
           "path_spec", "prepare_models", "sam_size", "slug", "thresholds", "zoo_model"]

GROUNDING_DINO_PATHS = ("baseline", "before", "exact", "balanced", "fast", "int8", "onnx", "onnx-int8", "compile")
"""Paths on one Grounding DINO model (``--detector-model``): their agreement with ``exact`` is measured."""
DETECTOR_PATHS = tuple(f"det:{name}" for name in DETECTORS)
PEER_PATHS = ("yoloe-11s-seg", "yoloe-11l-seg")
PATHS = (*GROUNDING_DINO_PATHS, *DETECTOR_PATHS, "realtime", *PEER_PATHS)
NOT_BY_DEFAULT = ("compile", "det:grounding_dino_tiny", "det:llmdet_tiny")  # minutes per shape; duplicates
DEFAULT_PATHS = tuple(p for p in PATHS if p not in NOT_BY_DEFAULT)


@dataclass(frozen=True)
class PathSpec:
    """What one benchmark path runs."""

    name: str
    describe: str
    detector_precision: str = "fp32"
    detector_image_size: int | None = None
    detector_max_size: int | None = None
    encoder_precision: str = "fp32"
    decoder_precision: str = "fp32"
    grounded_sam_style: bool = False  # unfused encoder, SamPredictor once per box
    stock_attention: bool = False  # transformers' grid_sample deformable attention
    detector_runtime: str = "torch"  # or "torch-int8" (quantize_dynamic), "onnxruntime", "onnxruntime-int8", "compile"
    detector: str = "grounding_dino_tiny"  # detector-zoo entry (its random model unless given)
    sam: str = "repvit_sam"  # "repvit_sam" (--sam-arch / --sam-image-size) or a SAM zoo name at its own size
    peer: str | None = None  # a yoloe_peer.MODELS name: the whole path is the peer model


def path_spec(name: str) -> PathSpec:
    """The spec of path ``name`` on this machine (the presets resolve here, in the measuring process)."""
    from ..runtime.speed import speed_plan

    if name == "baseline":
        return PathSpec(name, "Grounded-SAM style: fp32 eager, unfused encoder, one SamPredictor call per box",
                        grounded_sam_style=True, stock_attention=True)
    if name == "before":
        return PathSpec(name, "fp32, transformers' attention code, fused encoder, boxes in one call",
                        stock_attention=True)
    if name == "int8":
        return PathSpec(name, "exact + quantize_dynamic int8 detector Linear layers", detector_runtime="torch-int8")
    if name in ("onnx", "onnx-int8"):
        int8 = " with dynamic int8 MatMuls" if name == "onnx-int8" else ""
        return PathSpec(name, f"detector in onnxruntime{int8} (fp32 graph per input shape), encoder as exact",
                        stock_attention=True, detector_runtime="onnxruntime-int8" if int8 else "onnxruntime")
    if name in PEER_PATHS:
        return PathSpec(name, f"peer: ultralytics YOLOE {name[6:]} fp32 eager @640, classes set once, its own NMS",
                        detector="", sam="", peer=name)
    if name.startswith("det:"):
        plan = speed_plan("balanced")
        return PathSpec(name, f"{name[4:]} at its input size, balanced numerics (detector {plan.detector_precision}"
                              f", encoder {plan.encoder_precision})", plan.detector_precision,
                        encoder_precision=plan.encoder_precision, detector=name[4:])
    if name == "realtime":
        plan = replace(speed_plan("realtime"), detector=REALTIME_DETECTOR, sam=REALTIME_SAM)
        return PathSpec(name, plan.describe(), plan.detector_precision, encoder_precision=plan.encoder_precision,
                        decoder_precision=plan.decoder_precision, detector=REALTIME_DETECTOR, sam=REALTIME_SAM)
    plan = speed_plan("balanced" if name == "compile" else name)
    describe = f"{plan.describe()}, detector torch.compile" if name == "compile" else plan.describe()
    return PathSpec(name, describe, plan.detector_precision, plan.detector_image_size, plan.detector_max_size,
                    encoder_precision=plan.encoder_precision,
                    detector_runtime="compile" if name == "compile" else "torch")


def slug(name: str) -> str:
    """A path name as a file name (``det:omdet_turbo_tiny`` -> ``det-omdet_turbo_tiny``)."""
    return name.replace(":", "-")


def zoo_model(text: str) -> tuple[str, str]:
    """``NAME=FOLDER`` of ``--zoo-model`` (an argparse type)."""
    name, sep, folder = text.partition("=")
    if not sep or name not in DETECTORS or DETECTORS[name].backend != "hf":
        known = ", ".join(n for n, s in DETECTORS.items() if s.backend == "hf")
        raise argparse.ArgumentTypeError(f"expected NAME=FOLDER with NAME one of {known}; got {text!r}")
    return name, folder


def sam_size(name: str, repvit_size: int) -> int | None:
    """The encoder side of SAM entry ``name``: ``repvit_size`` for RepViT-SAM, else the entry's own."""
    return repvit_size if name.startswith("repvit_sam") else None


@dataclass(frozen=True)
class PathModels:
    """The models a path runs, as the child process gets them."""

    detector: str | None = None  # transformers folder or hub id
    sam: str = "repvit_sam"
    sam_checkpoint: str | None = None
    random: bool = True  # random weights: thresholds default to 0


def _random_detector(name: str, work: Path) -> str:
    """The folder of a random full-size model of zoo entry ``name`` in ``work`` (built on first use)."""
    from ..grounding.random_backends import BACKEND_ENTRIES, backend_detector_arguments, save_random_backend_detector
    from ..grounding.random_model import save_random_detector

    folder = work / f"random-{name}"
    backend = name in BACKEND_ENTRIES
    if not ((folder / "config.json").is_file() or backend and backend_detector_arguments(folder) is not None):
        print(f"building a random full-size {name} in {folder} ...", flush=True)
        (save_random_backend_detector if backend else save_random_detector)(name, folder)
    return str(folder)


def _random_sam(name: str, size: int | None, work: Path) -> str:
    """A random SAM checkpoint of entry ``name`` in ``work`` (built on first use)."""
    from ..models.sam_registry import build_sam

    path = work / f"sam_random_{name}_{size or 'default'}.pt"
    if not path.is_file():
        torch.manual_seed(0)
        torch.save(build_sam(name, img_size=size).state_dict(), path)
    return str(path)


def prepare_models(args: argparse.Namespace, work: Path) -> dict[str, PathModels]:
    """The models of each of ``args.paths``: given ones, else random full-size ones built in ``work``."""
    from ..models.sam_registry import repvit_sam_name

    repvit = repvit_sam_name(args.sam_arch)
    models = {}
    for name in args.paths:
        spec = path_spec(name)
        if spec.peer:
            models[name] = PathModels(sam="")
            continue
        given = args.detector_model if name in GROUNDING_DINO_PATHS else args.zoo_model.get(spec.detector)
        detector = given or _random_detector(spec.detector, work)
        sam = repvit if spec.sam == "repvit_sam" else spec.sam
        checkpoint = args.sam_checkpoint if sam == repvit else args.realtime_sam_checkpoint
        checkpoint = checkpoint or _random_sam(sam, sam_size(sam, args.sam_image_size), work)
        models[name] = PathModels(detector, sam, checkpoint, given is None)
    return models


def thresholds(args: argparse.Namespace, random: bool) -> tuple[float, float]:
    """``--box-threshold`` / ``--text-threshold``, else 0 for random weights (every query a box), 0.35 / 0.25."""
    box = args.box_threshold if args.box_threshold is not None else (0.0 if random else 0.35)
    text = args.text_threshold if args.text_threshold is not None else (0.0 if random else 0.25)
    return box, text
