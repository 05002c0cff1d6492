"""Synthetic datasets for the OpenMMLab tests: big coloured squares and discs on a grey background.

``write_coco(root)`` writes a COCO instance dataset (polygon masks) in the
layout of ``configs/tests/mask-rcnn_repvit-m0.6_fpn_tiny-synthetic.py``;
``write_ade(root)`` writes ADE20K-style image / label pairs for
``configs/tests/fpn_repvit-m0.6_tiny-synthetic.py``. Both are deterministic.

    python -m tests._mm_fixtures data/tiny   # writes data/tiny/coco and data/tiny/ade
"""
from __future__ import annotations

import importlib.util
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("square", "disc")
COLOURS = {"square": (220, 60, 40), "disc": (40, 90, 220)}


@dataclass
class Shape:
    kind: str
    polygon: list[float]  # x0, y0, x1, y1, ... in pixels

    @property
    def bbox(self) -> list[float]:
        xs, ys = self.polygon[0::2], self.polygon[1::2]
        return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


def _layout(index: int, size: int) -> list[Shape]:
    """One or two big shapes per image; positions vary with ``index`` but never overlap."""
    rng = np.random.default_rng(index)
    shapes = []
    kinds = [CLASSES[index % 2]] if index % 3 == 0 else [CLASSES[index % 2], CLASSES[(index + 1) % 2]]
    for slot, kind in enumerate(kinds):
        half = size / (2 * len(kinds))
        extent = rng.uniform(0.55, 0.7) * size if len(kinds) == 1 else rng.uniform(0.38, 0.45) * size
        cx = (2 * slot + 1) * half + rng.uniform(-0.03, 0.03) * size
        cy = size / 2 + rng.uniform(-0.2, 0.2) * (size - extent)
        r = extent / 2
        if kind == "square":
            poly = [cx - r, cy - r, cx + r, cy - r, cx + r, cy + r, cx - r, cy + r]
        else:
            angles = np.linspace(0, 2 * math.pi, 24, endpoint=False)
            poly = np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)], 1).ravel().tolist()
        shapes.append(Shape(kind, [round(float(v), 2) for v in poly]))
    return shapes


def _render(shapes: list[Shape], size: int, index: int) -> tuple[Image.Image, np.ndarray]:
    """The RGB image and its label map (0 background, 1 + class index)."""
    rng = np.random.default_rng(1000 + index)
    pixels = (128 + rng.integers(-12, 13, (size, size, 3))).astype(np.uint8)
    image = Image.fromarray(pixels)
    label = Image.new("L", (size, size), 0)
    draw, draw_label = ImageDraw.Draw(image), ImageDraw.Draw(label)
    for shape in shapes:
        points = list(zip(shape.polygon[0::2], shape.polygon[1::2]))
        draw.polygon(points, fill=COLOURS[shape.kind])
        draw_label.polygon(points, fill=1 + CLASSES.index(shape.kind))
    return image, np.asarray(label)


def write_coco(root: str | Path, num_images: int = 4, size: int = 128) -> Path:
    """``root/images/*.jpg`` and ``root/annotations.json`` (COCO instances, polygon masks)."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index in range(num_images):
        shapes = _layout(index, size)
        image, _ = _render(shapes, size, index)
        name = f"{index:04d}.jpg"
        image.save(root / "images" / name, quality=95)
        images.append({"id": index + 1, "file_name": name, "width": size, "height": size})
        for shape in shapes:
            x, y, w, h = shape.bbox
            annotations.append({
                "id": len(annotations) + 1, "image_id": index + 1, "category_id": 1 + CLASSES.index(shape.kind),
                "bbox": [x, y, w, h], "area": _polygon_area(shape.polygon), "iscrowd": 0,
                "segmentation": [shape.polygon],
            })
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(CLASSES)]
    (root / "annotations.json").write_text(json.dumps(
        {"images": images, "annotations": annotations, "categories": categories}))
    return root


def write_ade(root: str | Path, num_images: int = 4, size: int = 128) -> Path:
    """``root/images/training/*.jpg`` + ``root/annotations/training/*.png`` (and the same for validation)."""
    root = Path(root)
    for split in ("training", "validation"):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "annotations" / split).mkdir(parents=True, exist_ok=True)
        for index in range(num_images):
            image, label = _render(_layout(index, size), size, index)
            image.save(root / "images" / split / f"{index:04d}.jpg", quality=95)
            Image.fromarray(label).save(root / "annotations" / split / f"{index:04d}.png")
    return root


def load_tool(name: str, folder: str = "tools"):
    """Import ``tools/<name>.py`` (not a package) as a module, to call its ``main(argv)`` in-process."""
    spec = importlib.util.spec_from_file_location(f"repvit_{folder}_{name}", ROOT / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _polygon_area(poly: list[float]) -> float:
    xs, ys = np.asarray(poly[0::2]), np.asarray(poly[1::2])
    return float(abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))) / 2)


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "data/tiny")
    print(write_coco(out / "coco"), write_ade(out / "ade"))
