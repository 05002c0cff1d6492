"""Grounded segmentation: text prompt -> boxes (Grounding DINO backends) -> masks (RepViT-SAM).

Importing this package loads no backend: transformers, groundingdino-py and mmdet
are imported by :func:`build_detector` when a backend is built.
"""
from .detector import BACKENDS, DetectorLoadError, GroundingDetector, build_detector, select_detections
from .pipeline import GroundedSAM, MaskOptions
from .prompts import DEFAULT_MAX_TOKENS, PromptChunk, build_caption, class_text, parse_prompt, tokenize_prompt

__all__ = [
    "BACKENDS",
    "DEFAULT_MAX_TOKENS",
    "DetectorLoadError",
    "GroundedSAM",
    "GroundingDetector",
    "MaskOptions",
    "PromptChunk",
    "build_caption",
    "build_detector",
    "class_text",
    "parse_prompt",
    "select_detections",
    "tokenize_prompt",
]
