"""Build detectors, segmenters and the grounded pipeline by name, or from :class:`~repvit_plugins.options.ModelOptions`.

The backends never import this module; it imports each backend only when asked for it.
"""
from __future__ import annotations

from typing import Any

from ..options import DETECTOR_BACKENDS, ModelOptions, PipelineOptions
from ..runtime.speed import speed_plan_of
from .detector import GroundingDetector

__all__ = ["BACKENDS", "build_detector", "build_grounded_sam", "detector_from_options", "sam_checkpoint_of",
           "segmenter_from_options"]

BACKENDS = DETECTOR_BACKENDS


def build_detector(backend: str = "hf", *, model: str | None = None, checkpoint: str | None = None,
                   text_encoder: str | None = None, device: str = "cpu", options: PipelineOptions | None = None,
                   **kwargs: Any) -> GroundingDetector:
    """Build a grounding detector.

    Args:
        backend: ``'hf'`` (transformers), ``'original'`` (groundingdino-py) or ``'mmdet'`` (mmdet 3.x).
        model: ``hf``: a detector-zoo name (:mod:`.detector_zoo`), hub id or local folder of any supported
            family (Grounding DINO, MM-Grounding-DINO / LLMDet, OmDet-Turbo, OWLv2; default grounding_dino_tiny);
            any backend: a student ``.onnx`` from ``tools/export_student_onnx.py``;
            ``original`` / ``mmdet``: a config file (``original`` defaults to the package's SwinT OGC config).
        checkpoint: weights for ``original`` (a path or zoo name, default ``groundingdino_swint_ogc``) and ``mmdet``.
        text_encoder: a local BERT directory for ``original`` / ``mmdet`` (offline use).
        device: torch device.
        options: the detector's default thresholds, NMS, top-k and batch size.
        **kwargs: single options (``nms='agnostic'``, ``max_detections=10``, ...) and backend extras
            (``image_size`` / ``max_size``: test-time resize).
    """
    common = dict(device=device, options=options, **kwargs)
    if model is not None and str(model).endswith(".onnx"):  # a student exported by tools/export_student_onnx.py
        from .student_onnx import StudentOnnxDetector

        return StudentOnnxDetector(str(model), **common)
    if backend == "hf":
        if checkpoint is not None or text_encoder is not None:
            raise ValueError("the 'hf' backend takes its weights and text encoder from model= (a hub id or folder); "
                             "checkpoint= and text_encoder= are for the 'original' and 'mmdet' backends")
        return _hf_detector(model, common)
    if backend == "original":
        from .original_backend import OriginalGroundingDetector

        return OriginalGroundingDetector(model, checkpoint, text_encoder, **common)
    if backend == "mmdet":
        from .mmdet_backend import MMDetGroundingDetector
        from .mmdet_closed_set import MMDetClosedSetDetector, is_closed_set_config

        if model is None:
            raise ValueError("the 'mmdet' backend needs model= (an mmdet GroundingDINO config file, or the config "
                             "of a trained closed-set detector with its checkpoint=)")
        if is_closed_set_config(model):  # e.g. the RepViT Mask R-CNN trained on an autolabel dataset
            return MMDetClosedSetDetector(model, checkpoint, **common)
        return MMDetGroundingDetector(model, checkpoint, text_encoder, **common)
    raise ValueError(f"unknown detector backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def _hf_detector(model: str | None, common: dict[str, Any]) -> GroundingDetector:
    """The transformers detector of ``model``'s family (zoo name, hub id or folder; see :mod:`.detector_zoo`)."""
    from .detector_zoo import hf_family, resolve_detector_model

    source = resolve_detector_model(model)
    family = hf_family(source)
    if family is None:  # a hub model outside the zoo and not cached: its config.json says (fetched if online)
        from .hf_backend import model_type_of

        family = model_type_of(source)
    if family == "omdet-turbo":
        from .omdet_backend import OmDetTurboDetector

        return OmDetTurboDetector(source, **common)
    if family == "owlv2":
        from .owlv2_backend import Owlv2Detector

        return Owlv2Detector(source, **common)
    from .hf_backend import HFGroundingDetector  # Grounding DINO and MM-Grounding-DINO / LLMDet

    return HFGroundingDetector(source, **common)


def detector_from_options(models: ModelOptions, options: PipelineOptions | None = None) -> GroundingDetector:
    """The detector ``models`` names, with ``options`` as its defaults, run as ``models.speed`` says."""
    plan = speed_plan_of(models)
    resize = {"image_size": plan.detector_image_size, "max_size": plan.detector_max_size}
    return build_detector(models.detector, model=models.resolved_detector_model, checkpoint=models.detector_checkpoint,
                          text_encoder=models.text_encoder, device=models.resolved_device(), options=options,
                          precision=plan.detector_precision, **{k: v for k, v in resize.items() if v})


def sam_checkpoint_of(models: ModelOptions) -> str:
    """The SAM weights ``models`` asks for: ``--sam-checkpoint``, else the model's official zoo file.

    Raises:
        ValueError: a student without official weights and no ``--sam-checkpoint``.
    """
    from ..models.sam_registry import sam_model

    checkpoint = models.sam_checkpoint or sam_model(models.resolved_sam_model).checkpoint
    if checkpoint is None:
        raise ValueError(f"{models.resolved_sam_model} has no official weights (a student you distill yourself); "
                         "pass its file with --sam-checkpoint")
    return checkpoint


def segmenter_from_options(models: ModelOptions):
    """The :class:`~repvit_plugins.sam.SamSegmenter` ``models`` names."""
    from ..sam import SamSegmenter

    plan = speed_plan_of(models)
    return SamSegmenter(model=models.resolved_sam_model, checkpoint=sam_checkpoint_of(models),
                        backend=models.encoder_backend, device=models.resolved_device(),
                        img_size=models.sam_image_size, encoder_onnx=models.sam_encoder_onnx,
                        precision=plan.encoder_precision, decoder_precision=plan.decoder_precision)


def build_grounded_sam(models: ModelOptions, options: PipelineOptions | None = None):
    """Detector + segmenter of ``models`` as a :class:`~repvit_plugins.grounding.GroundedSAM` run with ``options``.

    With ``options.masks == 'detector'`` no SAM model is built: the detector (a trained mmdet instance-segmentation
    model) brings its own masks; any other detector fails here, before a model loads.
    """
    from .mask_source import detector_masks_error, uses_sam
    from .pipeline import GroundedSAM

    if uses_sam(options):
        return GroundedSAM(detector_from_options(models, options), segmenter_from_options(models), options)
    from .mmdet_closed_set import is_closed_set_config

    student = str(models.detector_model or "").endswith(".onnx") or (
        models.detector == "mmdet" and is_closed_set_config(models.detector_model))
    if not student:
        raise detector_masks_error(f"an open-vocabulary detector (--detector {models.detector})")
    return GroundedSAM(detector_from_options(models, options), None, options)
