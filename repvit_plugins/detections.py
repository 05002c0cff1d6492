"""The class-name convention of ``supervision.Detections`` shared by the pipeline, exporters and demo.

Class names live under supervision's own ``Detections.data`` key, ``supervision.config.CLASS_NAME_DATA_FIELD``,
which its annotators and exporters read. supervision is imported on first use, so importing this module stays
cheap.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    import supervision as sv

__all__ = ["class_names", "set_class_names"]


def _class_name_key() -> str:
    from supervision.config import CLASS_NAME_DATA_FIELD

    return CLASS_NAME_DATA_FIELD


def class_names(detections: sv.Detections) -> list[str]:
    """Each detection's class name; its class id as text where the detections carry no names."""
    names = detections.data.get(_class_name_key())
    if names is None:
        ids = detections.class_id if detections.class_id is not None else [""] * len(detections)
        return [str(c) for c in ids]
    return [str(n) for n in names]


def set_class_names(detections: sv.Detections, names: Sequence[str],
                    class_ids: Sequence[int] | None = None) -> sv.Detections:
    """Give ``detections`` the class ``names`` (one per detection) and ``class_ids`` (default: all 0)."""
    detections.class_id = np.asarray(class_ids if class_ids is not None else [0] * len(names), dtype=int)
    detections.data[_class_name_key()] = np.array(list(names), dtype=str)
    return detections
