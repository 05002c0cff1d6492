"""Per-instance binary PNG masks (0/255), one file per detection."""
from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np

from ..detections import class_names
from ..io.atomic import atomic_write_bytes


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "object"


def png_bytes(array: np.ndarray) -> bytes:
    """A ``uint8`` ``HxW`` array as (8-bit grayscale) PNG bytes, values unchanged."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def mask_png(mask: np.ndarray) -> bytes:
    """A boolean mask as PNG bytes (0 / 255)."""
    return png_bytes(mask.astype(np.uint8) * 255)


def mask_files(detections) -> list[tuple[str, bytes]]:
    """``(<i>_<class>.png, PNG bytes)`` for every mask in ``detections``."""
    if detections.mask is None:
        return []
    return [(f"{i:03d}_{_slug(name)}.png", mask_png(mask))
            for i, (mask, name) in enumerate(zip(detections.mask, class_names(detections)))]


def write_png_masks(detections, folder: str | Path) -> list[Path]:
    """Write ``<i>_<class>.png`` for every mask in ``detections``; returns the paths."""
    return [atomic_write_bytes(Path(folder) / name, data) for name, data in mask_files(detections)]
