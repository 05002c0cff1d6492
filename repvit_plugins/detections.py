"""The class-name convention of ``supervision.Detections`` shared by the pipeline, exporters and demo."""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["CLASS_NAME", "class_names", "set_class_names"]

CLASS_NAME = "class_name"
"""The ``Detections.data`` key of the class names (supervision's ``CLASS_NAME_DATA_FIELD``)."""


def class_names(detections) -> list[str]:
    """Each detection's class name; its class id as text where the detections carry no names."""
    names = detections.data.get(CLASS_NAME)
    if names is None:
        ids = detections.class_id if detections.class_id is not None else [""] * len(detections)
        return [str(c) for c in ids]
    return [str(n) for n in names]


def set_class_names(detections, names: Sequence[str], class_ids: Sequence[int] | None = None):
    """Give ``detections`` the class ``names`` (one per detection) and ``class_ids`` (default: all 0)."""
    detections.class_id = np.asarray(class_ids if class_ids is not None else [0] * len(names), dtype=int)
    detections.data[CLASS_NAME] = np.array(list(names), dtype=str)
    return detections
