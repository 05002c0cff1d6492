"""Offline fixtures for the distillation tests: a tiny random ViT SAM teacher and synthetic images."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

IMG_SIZE = 256  # 16 x 16 embedding grid for teacher and student
TINY_VIT = dict(embed_dim=48, depth=2, num_heads=2, window_size=8, global_attn_indexes=[1])


def tiny_teacher_spec(checkpoint: str | Path | None) -> dict:
    """``build_teacher`` arguments of the tiny teacher."""
    return dict(model_type="vit", checkpoint=None if checkpoint is None else str(checkpoint), img_size=IMG_SIZE,
                vit=dict(TINY_VIT))


def save_tiny_teacher(path: Path, seed: int = 0) -> Path:
    """A small random ViT SAM (standard prompt encoder and mask decoder), saved as a flat state dict."""
    from repvit_plugins.distill.teachers import build_teacher

    torch.manual_seed(seed)
    sam = build_teacher(**tiny_teacher_spec(None))
    torch.save(sam.state_dict(), path)
    return path


def _draw(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A background gradient with a few filled rectangles and ellipses."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(0, 255, 3)[None, None] + rng.uniform(-0.5, 0.5, 3)[None, None] * (xx + yy)[..., None]
    image = np.clip(base, 0, 255)
    for _ in range(rng.integers(2, 5)):
        color = rng.uniform(0, 255, 3)
        cy, cx = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width
        ry, rx = rng.uniform(0.08, 0.3) * height, rng.uniform(0.08, 0.3) * width
        if rng.random() < 0.5:
            inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        else:
            inside = (abs(yy - cy) <= ry) & (abs(xx - cx) <= rx)
        image[inside] = color
    return image.astype(np.uint8)


def make_images(folder: Path, count: int, seed: int = 0, sa1b: bool = False) -> list[Path]:
    """``count`` synthetic PNG images of varied (non-square) sizes; with ``sa1b``, SA-1B-style JSON files too."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        height, width = int(rng.integers(160, 320)), int(rng.integers(160, 320))
        path = folder / (f"sa_{seed * 1000 + i}.jpg" if sa1b else f"img_{i:03d}.png")
        Image.fromarray(_draw(rng, height, width)).save(path, quality=95)
        if sa1b:
            boxes = [[float(rng.uniform(0, width / 2)), float(rng.uniform(0, height / 2)),
                      float(rng.uniform(20, width / 2)), float(rng.uniform(20, height / 2))] for _ in range(3)]
            path.with_suffix(".json").write_text(json.dumps({
                "image": {"file_name": path.name, "height": height, "width": width},
                "annotations": [{"bbox": b, "area": b[2] * b[3]} for b in boxes],
            }))
        paths.append(path)
    return paths


def build_workspace(root: Path, train_images: int = 8, val_images: int = 4) -> Path:
    """Images and teacher for ``configs/tests/tiny_sam_distill.py`` (read through ``$REPVIT_TINY_DISTILL``)."""
    make_images(root / "images" / "train", train_images, seed=1)
    make_images(root / "images" / "val", val_images, seed=2)
    save_tiny_teacher(root / "teacher.pth")
    return root
