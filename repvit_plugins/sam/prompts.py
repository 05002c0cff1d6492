"""Checks of SAM prompts against the image, with errors that say what is wrong and what to pass instead.

Coordinates are pixels of the original image: points ``(x, y)``, boxes
``(x0, y0, x1, y1)``. Every check returns a clean ``float32`` array.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["PromptError", "check_image", "check_boxes", "check_points", "check_mask_input"]


class PromptError(ValueError):
    """A prompt (image, points, boxes or mask) that SAM cannot use."""


def _array(value, name: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise PromptError(f"{name} must be numeric, got {type(value).__name__}: {err}") from err
    if not np.isfinite(array).all():
        raise PromptError(f"{name} contains NaN or infinite values")
    return array


def check_image(image) -> np.ndarray:
    """An ``H x W x 3`` ``uint8`` RGB array (grayscale ``H x W`` and RGBA are converted)."""
    if not isinstance(image, np.ndarray):
        if hasattr(image, "convert"):  # a PIL image
            image = np.asarray(image.convert("RGB"))
        else:
            raise PromptError(f"image must be an H x W x 3 uint8 RGB numpy array, got {type(image).__name__}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise PromptError(f"image must be H x W x 3 (RGB), got shape {image.shape}")
    if image.shape[2] == 4:
        image = image[:, :, :3]
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise PromptError(f"image is empty (shape {image.shape})")
    if image.dtype != np.uint8:
        if np.issubdtype(image.dtype, np.floating) and image.size and image.max() <= 1.0:
            raise PromptError("image holds floats in [0, 1]; pass uint8 values in [0, 255] "
                              "(e.g. (image * 255).round().astype(np.uint8))")
        if image.size and (image.min() < 0 or image.max() > 255):
            raise PromptError(f"image values must lie in [0, 255], got [{image.min()}, {image.max()}]")
        image = image.astype(np.uint8)
    return np.ascontiguousarray(image)


def check_boxes(boxes, image_size: Sequence[int], *, clip: bool = True) -> np.ndarray:
    """``N x 4`` xyxy pixel boxes on an image of ``(H, W)``; a single ``(4,)`` box becomes ``1 x 4``.

    With ``clip`` (default) boxes reaching past the border are clipped to it (as
    detectors produce them); a box with no area inside the image is an error.
    Without ``clip`` any coordinate outside the image is an error.
    """
    array = _array(boxes, "boxes")
    if array.ndim == 1 and array.shape[0] == 4:
        array = array[None]
    if array.size == 0 and array.shape[-1:] in ((4,), (0,)):
        return np.zeros((0, 4), dtype=np.float32)
    if array.ndim != 2 or array.shape[1] != 4:
        raise PromptError(f"boxes must have shape (N, 4) as x0, y0, x1, y1 pixels, got {array.shape}")
    h, w = int(image_size[0]), int(image_size[1])
    for i, (x0, y0, x1, y1) in enumerate(array.tolist()):
        box = f"box {i} ({x0:g}, {y0:g}, {x1:g}, {y1:g})"
        if x1 <= x0 or y1 <= y0:
            raise PromptError(f"{box} is degenerate: it needs x1 > x0 and y1 > y0 (xyxy order, not xywh)")
        if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
            raise PromptError(f"{box} lies outside the {w}x{h} (width x height) image")
        if not clip and (x0 < 0 or y0 < 0 or x1 > w or y1 > h):
            raise PromptError(f"{box} reaches outside the {w}x{h} (width x height) image; clip it or pass clip=True")
    array[:, 0::2] = array[:, 0::2].clip(0, w)
    array[:, 1::2] = array[:, 1::2].clip(0, h)
    return array


def check_points(coords, labels, image_size: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """``K x 2`` ``(x, y)`` pixel points inside an ``(H, W)`` image and ``K`` labels (1 foreground, 0 background)."""
    if coords is None or labels is None:
        raise PromptError("points need both point_coords (K, 2) and point_labels (K,)")
    points = _array(coords, "point_coords")
    marks = _array(labels, "point_labels")
    if points.ndim == 1 and points.shape[0] == 2:
        points = points[None]
    if points.size == 0:
        raise PromptError("the point list is empty: pass at least one (x, y) point, or use a box prompt")
    if points.ndim != 2 or points.shape[1] != 2:
        raise PromptError(f"point_coords must have shape (K, 2) as x, y pixels, got {points.shape}")
    if marks.ndim == 2 and 1 in marks.shape:
        marks = marks.reshape(-1)
    if marks.ndim != 1 or marks.shape[0] != points.shape[0]:
        raise PromptError(f"point_labels must have shape ({points.shape[0]},) to match point_coords, got {marks.shape}")
    if not np.isin(marks, (0, 1)).all():
        raise PromptError(f"point_labels must be 1 (foreground) or 0 (background), got {np.unique(marks).tolist()}")
    h, w = int(image_size[0]), int(image_size[1])
    outside = (points[:, 0] < 0) | (points[:, 0] > w) | (points[:, 1] < 0) | (points[:, 1] > h)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise PromptError(f"point {i} ({points[i, 0]:g}, {points[i, 1]:g}) lies outside the {w}x{h} "
                          "(width x height) image; points are (x, y) pixels")
    return points, marks.astype(np.float32)


def check_mask_input(mask, size: Sequence[int]) -> np.ndarray:
    """A low-res mask prompt: logits of shape ``(1, h, w)`` (``(h, w)`` accepted), ``(h, w)`` = ``size``."""
    array = _array(mask, "mask_input")
    expected = (1, int(size[0]), int(size[1]))
    if array.shape == expected[1:]:
        array = array[None]
    if array.shape != expected:
        raise PromptError(f"mask_input must have shape {expected} (the low_res_logits of a previous prediction), "
                          f"got {array.shape}")
    return array
