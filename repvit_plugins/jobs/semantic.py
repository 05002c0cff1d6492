"""Semantic-segmentation labels of an auto-labelled dataset: one class-index PNG per image, one list per split.

``semantic/<file name>.png`` holds per pixel 0 (background: no label there) or the COCO ``category_id``
(1 ... K) of the label covering it; where labels overlap, the best-scoring one wins. ``semantic/<split>.txt``
lists the split's image file names (relative to the images' root, as in ``train.json`` / ``val.json``), which
mmseg's ``BaseSegDataset`` reads with ``img_suffix=''`` and ``seg_map_suffix='.png'``. Class 0 is a real class
(``reduce_zero_label=False``): a pixel the teacher labelled nothing is background to learn, not one to ignore.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..exporters import png_bytes, rle_to_mask
from ..io.atomic import atomic_write_bytes, atomic_write_text

__all__ = ["LABEL_DIR", "MAX_CLASSES", "label_map", "label_path", "write_label_maps"]

LABEL_DIR = "semantic"
MAX_CLASSES = 254
"""Categories a ``uint8`` label map holds besides background (255 is mmseg's ignore index)."""


def label_path(out_dir: str | Path, file_name: str) -> Path:
    """Where the label map of the image ``file_name`` (relative to the images' root) goes."""
    return Path(out_dir) / LABEL_DIR / f"{file_name}.png"


def label_map(annotations: Sequence[Mapping[str, Any]], height: int, width: int) -> np.ndarray:
    """``uint8 (height, width)``: 0 background, else the ``category_id`` of the best-scoring mask covering the pixel."""
    label = np.zeros((height, width), dtype=np.uint8)
    for ann in sorted(annotations, key=lambda a: a.get("score", 1.0)):  # ascending: the best is painted last
        if "segmentation" in ann:
            label[rle_to_mask(ann["segmentation"])] = ann["category_id"]
    return label


def write_label_maps(out_dir: str | Path, parts: Mapping[str, tuple[list[dict], list[dict]]],
                     num_classes: int) -> None:
    """Write every image's label map and ``semantic/<split>.txt``.

    Args:
        out_dir: the dataset folder.
        parts: per split, the COCO ``images`` and ``annotations`` of ``<split>.json``.
        num_classes: the dataset's categories (at most :data:`MAX_CLASSES`).
    """
    if num_classes > MAX_CLASSES:
        raise ValueError(f"{num_classes} categories do not fit a uint8 label map (at most {MAX_CLASSES})")
    for split, (images, labels) in parts.items():
        by_image: dict[int, list[dict]] = defaultdict(list)
        for ann in labels:
            by_image[ann["image_id"]].append(ann)
        for image in images:
            label = label_map(by_image[image["id"]], image["height"], image["width"])
            atomic_write_bytes(label_path(out_dir, image["file_name"]), png_bytes(label))
        atomic_write_text(Path(out_dir) / LABEL_DIR / f"{split}.txt",
                          "".join(f"{image['file_name']}\n" for image in images))
