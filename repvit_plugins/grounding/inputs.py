"""The pipeline's inputs, decided once: how images are coerced to RGB ``uint8`` arrays and how lists are batched.

The detector (:meth:`~.detector.GroundingDetector.detect`), the pipeline (:class:`~.pipeline.GroundedSAM`) and the
labelling job all take their images and batches from here.
"""
from __future__ import annotations

from typing import Any, Iterator, Sequence, TypeVar

import numpy as np

__all__ = ["as_image", "as_images", "batched"]

T = TypeVar("T")


def batched(items: Sequence[T], size: int) -> Iterator[list[T]]:
    """``items`` in consecutive lists of ``size`` (the last may be shorter)."""
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


def as_image(source: Any) -> np.ndarray:
    """An ``HxWx3`` RGB ``uint8`` array: returned as it is, else decoded by :func:`repvit_plugins.io.load_image`.

    Raises:
        ImageLoadError: a file or object that is not a usable image.
    """
    if isinstance(source, np.ndarray) and source.dtype == np.uint8 and source.ndim == 3 and source.shape[-1] == 3:
        return source
    from ..io import load_image

    return load_image(source)


def as_images(images: Any) -> list[np.ndarray]:
    """One image, a list of them or an ``NxHxWx3`` array as a list of RGB ``uint8`` arrays (see :func:`as_image`)."""
    if isinstance(images, np.ndarray) and images.ndim == 4:
        images = list(images)
    elif not isinstance(images, (list, tuple)):
        images = [images]
    return [as_image(image) for image in images]
