"""Draw masks, boxes and labels on an image with supervision's annotators."""
from __future__ import annotations

import numpy as np

from .detections import class_names


def detection_labels(detections) -> list[str]:
    """``"<class> <score>"`` per detection (just the class without scores)."""
    names = class_names(detections)
    if detections.confidence is None:
        return names
    return [f"{n} {c:.2f}" for n, c in zip(names, detections.confidence)]


def annotate(image: np.ndarray, detections, *, masks: bool = True, boxes: bool = True, labels: bool = True,
             opacity: float = 0.45, color_by_index: bool = False) -> np.ndarray:
    """An annotated copy of an RGB ``image`` (one color per class, or per detection with ``color_by_index``)."""
    import supervision as sv

    canvas = np.ascontiguousarray(image[..., ::-1])  # supervision draws in BGR, like OpenCV
    if len(detections) == 0:
        return image.copy()
    scale = sv.calculate_optimal_text_scale(resolution_wh=(image.shape[1], image.shape[0]))
    thickness = sv.calculate_optimal_line_thickness(resolution_wh=(image.shape[1], image.shape[0]))
    lookup = sv.ColorLookup.INDEX if color_by_index else sv.ColorLookup.CLASS
    if masks and detections.mask is not None:
        canvas = sv.MaskAnnotator(opacity=opacity, color_lookup=lookup).annotate(canvas, detections)
    if boxes:
        canvas = sv.BoxAnnotator(thickness=thickness, color_lookup=lookup).annotate(canvas, detections)
    if labels:
        annotator = sv.LabelAnnotator(text_scale=scale, text_thickness=max(1, thickness // 2), color_lookup=lookup,
                                      smart_position=True)
        canvas = annotator.annotate(canvas, detections, labels=detection_labels(detections))
    return np.ascontiguousarray(canvas[..., ::-1])
