"""The grounded pipeline's knobs in one place: names, defaults, help texts, choices and valid ranges.

:class:`PipelineOptions` says how a text prompt becomes masks (thresholds, NMS,
top-k, batch size, mask refinement); :class:`ModelOptions` says which models do
it. The ``repvit-plugins segment`` / ``demo`` flags, the run settings a resumed
batch must match, the Gradio controls and the library defaults all read them
from here. This module imports nothing heavy, so ``--help`` stays fast.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from typing import Self

__all__ = [
    "DETECTOR_BACKENDS",
    "MASK_SOURCES",
    "NMS_MODES",
    "SAM_BACKENDS",
    "REALTIME_DETECTOR",
    "REALTIME_SAM",
    "SPEED_PRESETS",
    "ModelOptions",
    "OptionSpec",
    "PipelineOptions",
    "option_specs",
]

DETECTOR_BACKENDS = ("hf", "original", "mmdet")
"""Grounding DINO implementations: transformers, groundingdino-py, mmdet 3.x."""
SAM_BACKENDS = ("torch", "onnxruntime")
"""Runtimes of the SAM image encoder."""
NMS_MODES = ("class", "agnostic", "none")
"""Non-maximum suppression per class, across classes, or off."""
MASK_SOURCES = ("sam", "detector")
"""Who draws the masks: SAM on the detector's boxes, or the detector itself (an mmdet Mask R-CNN student)."""
SPEED_PRESETS = ("exact", "balanced", "fast", "realtime")
"""Speed paths (:mod:`repvit_plugins.runtime.speed`): float32; bf16 where native; that + a smaller detector input;
the fastest detector (OmDet-Turbo) and SAM (EdgeSAM) in bf16 where native."""
REALTIME_SAM = "edge_sam"
"""The SAM the ``realtime`` preset picks when ``--sam-model`` is not given."""
REALTIME_DETECTOR = "omdet_turbo_tiny"
"""The detector-zoo entry the ``realtime`` preset picks when ``--detector-model`` is not given: the fastest
open-vocabulary detector on 2 CPU cores (tools/benchmark_pipeline.py)."""


@dataclass(frozen=True)
class OptionSpec:
    """What a front end needs to offer one option: its help text, choices and range."""

    name: str
    default: Any
    help: str
    label: str
    choices: tuple[str, ...] | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    affects_results: bool = True

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value: Any) -> None:
        """Raise ``ValueError`` (naming the option) when ``value`` is not allowed."""
        if value is None:
            return
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{self.name} must be one of {', '.join(self.choices)}; got {value!r}")
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            raise ValueError(f"{self.name} must be {'>' if self.low_open else '>='} {self.low}; got {value!r}")
        if self.high is not None and value > self.high:
            raise ValueError(f"{self.name} must be <= {self.high}; got {value!r}")


def _option(default: Any, help: str, label: str = "", **spec: Any) -> Any:
    return field(default=default, metadata={"spec": dict(help=help, label=label, **spec)})


def option_specs(options: Any) -> list[OptionSpec]:
    """The :class:`OptionSpec` of every field of an options dataclass (class or instance), in order."""
    specs = []
    for f in dataclasses.fields(options):
        spec = dict(f.metadata["spec"])
        spec["label"] = spec["label"] or f.name.replace("_", " ").capitalize()
        specs.append(OptionSpec(name=f.name, default=f.default, **spec))
    return specs


class _Options:
    """Validation, overrides and run settings shared by the options dataclasses."""

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]  # every subclass is a dataclass

    def __post_init__(self) -> None:
        for spec in option_specs(self):
            spec.check(getattr(self, spec.name))

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` (option names) applied and checked."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise TypeError(f"unknown {type(self).__name__} field(s): {', '.join(unknown)}; "
                            f"known: {', '.join(sorted(known))}")
        return dataclasses.replace(self, **changes)

    def settings(self) -> dict[str, Any]:
        """The values that change results (a resumed run must match them)."""
        return {spec.name: getattr(self, spec.name) for spec in option_specs(self) if spec.affects_results}


@dataclass(frozen=True)
class PipelineOptions(_Options):
    """How a text prompt becomes boxes and masks."""

    box_threshold: float = _option(0.35, "minimum box score", "Box threshold", low=0.0, high=1.0)
    text_threshold: float = _option(0.25, "minimum token score for a phrase", "Text threshold", low=0.0, high=1.0)
    nms: str = _option("class", "non-maximum suppression per class, across classes, or off", "NMS",
                       choices=NMS_MODES)
    nms_iou: float = _option(0.5, "IoU above which NMS drops the weaker box", "NMS IoU",
                             low=0.0, low_open=True, high=1.0)
    max_detections: int | None = _option(100, "keep at most this many boxes per image", "Max detections", low=1)
    batch_size: int = _option(4, "images per detector call", low=1, affects_results=False)
    masks: str = _option("sam", "who draws the masks: SAM on the boxes, or the detector itself (a trained mmdet "
                                "Mask R-CNN's own masks; no SAM model is loaded)", "Masks", choices=MASK_SOURCES)
    multimask: bool = _option(False, "3 masks per box, keep the best-scoring (SAM)")
    min_area: int = _option(0, "remove mask islands smaller than this (pixels)", "Min mask area", low=0)
    fill_holes: bool = _option(False, "fill holes in masks (below --min-area if set)")
    boxes_from_masks: bool = _option(False, "replace boxes by the tight boxes of their masks")

    def __post_init__(self) -> None:
        if self.nms is None:  # None reads as "off", as in torchvision
            object.__setattr__(self, "nms", "none")
        super().__post_init__()

    @property
    def refines_masks(self) -> bool:
        return bool(self.min_area or self.fill_holes)


@dataclass(frozen=True)
class ModelOptions(_Options):
    """Which detector and segmenter run, and where their weights come from."""

    detector: str = _option("hf", "Grounding DINO implementation: transformers (hf), groundingdino-py (original) "
                                  "or mmdet", choices=DETECTOR_BACKENDS)
    detector_model: str | None = _option(None, "hf: a detector-zoo name (grounding_dino_tiny, grounding_dino_base, "
                                               "mm_grounding_dino_tiny, llmdet_tiny, llmdet_base, omdet_turbo_tiny, "
                                               "owlv2_base), a hub id or a local save_pretrained folder of one of "
                                               "those families (default grounding_dino_tiny; omdet_turbo_tiny "
                                               "with --speed realtime); original/mmdet: config file (default: the "
                                               "official SwinT OGC config); any backend: a student .onnx exported "
                                               "by tools/export_student_onnx.py")
    detector_checkpoint: str | None = _option(None, "original/mmdet: checkpoint path or zoo name "
                                                    "(default groundingdino_swint_ogc)")
    text_encoder: str | None = _option(None, "original/mmdet: local BERT folder (bert-base-uncased) for offline use",
                                       affects_results=False)
    sam_model: str | None = _option(None, "SAM model: repvit_sam (RepViT-SAM, M2.3; the default), repvit_sam_<arch> "
                                          "(a distilled RepViT student), edge_sam (the default with --speed "
                                          "realtime), edge_sam_3x, mobile_sam, efficientvit_sam_{l0,l1,l2,xl0,xl1}, "
                                          "sam_vit_b, sam_vit_l or sam_vit_h")
    sam_checkpoint: str | None = _option(None, "SAM checkpoint path or zoo name (default: the model's official "
                                               "weights from the zoo)")
    sam_arch: str = _option("m2_3", "RepViT variant of a repvit_sam encoder (m2_3 for the official RepViT-SAM; others "
                                    "for distilled students: the same as --sam-model repvit_sam_<arch>)")
    sam_image_size: int | None = _option(None, "encoder input side the checkpoint was made for (default: the "
                                               "model's, 1024)", low=16)
    sam_backend: str = _option("torch", "image-encoder runtime (onnxruntime exports the encoder once into the model "
                                        "cache)", choices=SAM_BACKENDS, affects_results=False)
    sam_encoder_onnx: str | None = _option(None, "encoder ONNX file from tools/export_onnx.py to run in onnxruntime, "
                                                 "e.g. the static int8 one (--quantize: about 1.6x faster on 2 CPU "
                                                 "cores, slightly different masks); implies --sam-backend onnxruntime")
    device: str | None = _option(None, "torch device (default: cuda when available, else cpu)",
                                 affects_results=False)
    speed: str = _option("balanced", "exact: float32 as trained; balanced: bf16 autocast where the CPU (AVX512-BF16 "
                                     "/ AMX) or GPU computes it natively, else float32; fast: balanced plus detector "
                                     "input at shortest edge 512 (less accurate); realtime: balanced numerics with "
                                     "the fastest detector (omdet_turbo_tiny, COCO AP 42.5 vs Grounding DINO-T's "
                                     "48.4) and SAM (edge_sam) unless --detector-model / --sam-model say otherwise "
                                     "(see docs/speed.md)",
                         "Speed", choices=SPEED_PRESETS)

    @property
    def encoder_backend(self) -> str:
        """The encoder runtime that runs: an encoder ONNX file means onnxruntime."""
        return "onnxruntime" if self.sam_encoder_onnx else self.sam_backend

    @property
    def resolved_sam_model(self) -> str:
        """The SAM registry entry that runs: ``--sam-model``, else the preset's pick (``--sam-arch`` picks a RepViT
        student of ``repvit_sam``)."""
        sam_model = self.sam_model or (REALTIME_SAM if self.speed == "realtime" else "repvit_sam")
        if sam_model != "repvit_sam":
            return sam_model
        from .models.sam_registry import repvit_sam_name

        return repvit_sam_name(self.sam_arch)

    @property
    def resolved_detector_model(self) -> str | None:
        """``--detector-model``, else the ``realtime`` preset's detector (transformers backend only)."""
        if self.detector_model is None and self.speed == "realtime" and self.detector == "hf":
            return REALTIME_DETECTOR
        return self.detector_model

    def settings(self) -> dict[str, Any]:
        """As :meth:`_Options.settings`, with the detector and SAM that actually run (a preset's picks)."""
        return {**super().settings(), "detector_model": self.resolved_detector_model,
                "sam_model": self.resolved_sam_model}

    def resolved_device(self) -> str:
        if self.device:
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
