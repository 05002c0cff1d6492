"""Where the masks come from (``options.masks``): SAM on the detector's boxes, or the detector's own masks.

The one place that reads ``masks``: the factory (whether a SAM is built), the weights preflight (whether SAM's file is
needed), the detector (whether it returns its masks) and the pipeline (how it segments) all ask here.
"""
from __future__ import annotations

from typing import Any

from ..options import PipelineOptions

__all__ = ["check_mask_source", "detector_masks_error", "uses_sam"]


def uses_sam(options: PipelineOptions | None) -> bool:
    """Whether masks come from SAM (``masks='sam'``, the default) rather than from the detector."""
    return options is None or options.masks == "sam"


def detector_masks_error(detector: str) -> ValueError:
    """The error of ``masks='detector'`` with a ``detector`` that only gives boxes."""
    return ValueError(f"masks='detector' (--masks detector) needs a detector that predicts masks, such as the mmdet "
                      f"Mask R-CNN trained on an autolabel dataset; {detector} gives boxes only: use masks='sam'")


def check_mask_source(detector: Any, segmenter: Any, options: PipelineOptions) -> None:
    """Raise ``ValueError`` when ``options.masks`` names a source the pipeline lacks (a segmenter, detector masks)."""
    if uses_sam(options):
        if segmenter is None:
            raise ValueError("masks='sam' needs a segmenter (a SamSegmenter); or use the detector's own masks "
                             "with masks='detector'")
    elif not getattr(detector, "predicts_masks", False):
        raise detector_masks_error(type(detector).__name__)
