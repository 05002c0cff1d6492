"""Grounded segmentation: text prompt -> boxes (Grounding DINO backends) -> masks (RepViT-SAM).

Importing this package loads no backend: transformers, groundingdino-py and mmdet
are imported by :func:`build_detector` when a backend is built.
"""
from ..options import ModelOptions, PipelineOptions
from .detector import DetectorLoadError, GroundingDetector, select_detections
from .detector_zoo import DETECTORS, DetectorSpec, detector_spec
from .factory import BACKENDS, build_detector, build_grounded_sam, detector_from_options, segmenter_from_options
from .pipeline import GroundedSAM, ImageFailure
from .prompts import DEFAULT_MAX_TOKENS, PromptChunk, build_caption, class_text, parse_prompt, tokenize_prompt

__all__ = [
    "BACKENDS",
    "DEFAULT_MAX_TOKENS",
    "DETECTORS",
    "DetectorSpec",
    "DetectorLoadError",
    "GroundedSAM",
    "GroundingDetector",
    "ImageFailure",
    "ModelOptions",
    "PipelineOptions",
    "PromptChunk",
    "build_caption",
    "build_detector",
    "build_grounded_sam",
    "class_text",
    "detector_from_options",
    "detector_spec",
    "parse_prompt",
    "segmenter_from_options",
    "select_detections",
    "tokenize_prompt",
]
