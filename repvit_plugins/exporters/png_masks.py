"""Per-instance binary PNG masks (0/255), one file per detection."""
from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np

from .atomic import atomic_write_bytes


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "object"


def write_png_masks(detections, folder: str | Path) -> list[Path]:
    """Write ``<i>_<class>.png`` for every mask in ``detections``; returns the paths."""
    from PIL import Image

    if detections.mask is None:
        return []
    names = detections.data.get("class_name", [str(c) for c in detections.class_id])
    paths = []
    for i, (mask, name) in enumerate(zip(detections.mask, names)):
        buffer = io.BytesIO()
        Image.fromarray(mask.astype(np.uint8) * 255).save(buffer, format="PNG")
        paths.append(atomic_write_bytes(Path(folder) / f"{i:03d}_{_slug(str(name))}.png", buffer.getvalue()))
    return paths
