"""YOLO segmentation labels: ``class x1 y1 x2 y2 ...`` with polygon coordinates normalised to [0, 1]."""
from __future__ import annotations

import numpy as np


def _largest_polygon(mask: np.ndarray) -> np.ndarray | None:
    import cv2

    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    contours = [c for c in contours if len(c) >= 3]
    if not contours:
        return None
    return max(contours, key=cv2.contourArea).reshape(-1, 2)


def yolo_seg_lines(detections, height: int, width: int) -> list[str]:
    """One line per detection with a non-empty mask (its largest outer contour)."""
    lines: list[str] = []
    if detections.mask is None:
        return lines
    for class_id, mask in zip(detections.class_id, detections.mask):
        polygon = _largest_polygon(mask)
        if polygon is None:
            continue
        coords = (polygon / np.array([width, height], dtype=np.float64)).clip(0, 1).ravel()
        lines.append(f"{int(class_id)} " + " ".join(f"{v:.6f}" for v in coords))
    return lines
