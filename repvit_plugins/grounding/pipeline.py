"""Text prompt -> boxes (a grounding detector) -> masks (RepViT-SAM), as ``supervision.Detections``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np


@dataclass
class MaskOptions:
    """How box prompts become masks.

    Attributes:
        multimask_output: ask SAM for 3 masks per box and keep the best-scoring one.
        min_area: remove islands smaller than this many pixels (0: off).
        fill_holes: fill holes smaller than ``min_area`` pixels (or any hole when ``min_area`` is 0).
        boxes_from_masks: replace each box by the tight box of its mask.
    """

    multimask_output: bool = False
    min_area: int = 0
    fill_holes: bool = False
    boxes_from_masks: bool = False


def refine_mask(mask: np.ndarray, min_area: int = 0, fill_holes: bool = False) -> np.ndarray:
    """Drop islands smaller than ``min_area`` and optionally fill holes (segment_anything's region filter)."""
    from segment_anything.utils.amg import remove_small_regions

    if min_area > 0:
        mask, _ = remove_small_regions(mask, min_area, mode="islands")
    if fill_holes:
        mask, _ = remove_small_regions(mask, min_area if min_area > 0 else mask.size, mode="holes")
    return mask


def attach_masks(detections, masks: np.ndarray, scores: np.ndarray, options: MaskOptions):
    """Return ``detections`` with ``mask`` set (and ``data['mask_score']``), refined as ``options`` say."""
    import supervision as sv

    if options.min_area or options.fill_holes:
        masks = np.stack([refine_mask(m, options.min_area, options.fill_holes) for m in masks]) if len(masks) else masks
    detections.mask = masks.astype(bool)
    detections.data["mask_score"] = np.asarray(scores, dtype=np.float32)
    if options.boxes_from_masks and len(masks):
        tight = sv.mask_to_xyxy(masks).astype(np.float32)
        empty = ~masks.reshape(len(masks), -1).any(axis=1)
        detections.xyxy = np.where(empty[:, None], detections.xyxy, tight)
    return detections


class GroundedSAM:
    """Grounded segmentation: ``predict(image(s), prompt) -> Detections`` with masks.

    Each image is embedded once and all of its boxes go through the mask decoder
    in one batched call; a list of images goes through the detector in batches.

    Args:
        detector: anything with ``detect(images, prompt, box_threshold, text_threshold) -> list[Detections]``.
        segmenter: a :class:`repvit_plugins.sam.SamSegmenter` (``set_image`` + ``predict_boxes``).
        box_threshold / text_threshold: passed to the detector.
        mask_options: see :class:`MaskOptions`.
        batch_size: images per detector call.
    """

    def __init__(self, detector, segmenter, *, box_threshold: float = 0.35, text_threshold: float = 0.25,
                 mask_options: MaskOptions | None = None, batch_size: int = 4):
        self.detector = detector
        self.segmenter = segmenter
        self.box_threshold = box_threshold
        self.text_threshold = text_threshold
        self.mask_options = mask_options or MaskOptions()
        self.batch_size = max(1, batch_size)

    def segment(self, image: np.ndarray, detections):
        """Add masks for ``detections``' boxes on an RGB ``image`` (one embedding, one decoder call)."""
        self.segmenter.set_image(image)
        masks, scores = self.segmenter.predict_boxes(detections.xyxy, multimask_output=self.mask_options.multimask_output)
        return attach_masks(detections, masks, scores, self.mask_options)

    def predict(self, images: Any | Sequence[Any], prompt: str | Sequence[str]):
        """Detections with masks for one image (path, PIL or RGB array) or a list of them."""
        from ..io import load_image

        single = not isinstance(images, (list, tuple))
        sources = [images] if single else list(images)
        results = []
        for start in range(0, len(sources), self.batch_size):
            arrays = [load_image(s) for s in sources[start:start + self.batch_size]]
            found = self.detector.detect(arrays, prompt, box_threshold=self.box_threshold,
                                         text_threshold=self.text_threshold)
            results += [self.segment(array, dets) for array, dets in zip(arrays, found)]
        return results[0] if single else results
