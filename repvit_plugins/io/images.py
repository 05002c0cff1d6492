"""Robust image input: anything reasonable in, an ``HxWx3`` RGB ``uint8`` array out.

Sources: a path (``str`` / ``Path``), a PIL image, or a numpy array. Conversions:

- grayscale (``HxW``, ``HxWx1``, PIL ``L`` / ``1``) is repeated to 3 channels;
- an alpha channel (RGBA, LA, palette with transparency, ``HxWx4``, ``HxWx2``) is
  composited on a **white** background, so transparent pixels become white;
- 16-bit data (PIL ``I;16`` / ``I``, ``uint16`` arrays) is scaled to 8 bits (``v / 257``);
- float data in ``[0, 1]`` is scaled by 255 (float data in ``[0, 255]`` is rounded);
- palette, CMYK, YCbCr, LAB and HSV images are converted to RGB;
- files are rotated as their EXIF orientation says.

Files are checked against a pixel limit before they are decoded (a
decompression-bomb guard). URLs are refused: nothing here touches the network.
Every failure raises :class:`ImageLoadError` naming the source and the problem.
"""
from __future__ import annotations

import glob
import os
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

__all__ = ["DEFAULT_MAX_PIXELS", "IMAGE_EXTENSIONS", "ImageLoadError", "iter_image_paths", "load_image"]

DEFAULT_MAX_PIXELS = 100_000_000
"""Default pixel limit of :func:`load_image` for files (about 10000 x 10000)."""

IMAGE_EXTENSIONS = frozenset({
    ".bmp", ".dib", ".gif", ".jfif", ".jpe", ".jpeg", ".jpg", ".pbm", ".pgm", ".png", ".pnm", ".ppm",
    ".tga", ".tif", ".tiff", ".webp",
})
"""File extensions (lower case) that :func:`iter_image_paths` picks from folders and globs."""

_URL_PREFIXES = ("http://", "https://", "ftp://", "s3://", "gs://", "data:")
_PIL_LIMIT_LOCK = threading.Lock()


class ImageLoadError(ValueError):
    """An input could not be turned into an image: ``source`` names it, ``reason`` says why.

    ``str(err)`` is ``"<source>: <reason>"``; a report that already names the source shows ``reason``.
    """

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


def _is_url(text: str) -> bool:
    return text.strip().lower().startswith(_URL_PREFIXES)


def _url_error(text: str) -> ImageLoadError:
    return ImageLoadError(
        text, "URLs are not fetched (this library never uses the network). "
        "Download the file first and pass its local path."
    )


# --------------------------------------------------------------------------- arrays


def _to_uint8(array: np.ndarray, what: str) -> np.ndarray:
    """Scale any numeric array to ``uint8`` (see the module docstring for the rules)."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if array.dtype == np.uint16:
        return np.round(array / 257.0).astype(np.uint8)
    low: float  # ints in the integer branch, floats in the float one
    high: float
    if np.issubdtype(array.dtype, np.integer):
        low, high = (int(array.min()), int(array.max())) if array.size else (0, 0)
        if low >= 0 and high <= 255:
            return array.astype(np.uint8)
        if low >= 0 and high <= 65535:
            return np.round(array / 257.0).astype(np.uint8)
        raise ImageLoadError(what, f"integer pixel values in [{low}, {high}] fit neither 8 nor 16 bits; "
                             "scale the image to 0..255 first.")
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ImageLoadError(what, "the float image holds NaN or infinite values.")
        low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
        if low >= 0 and high <= 1:
            return np.round(array * 255.0).astype(np.uint8)
        if low >= 0 and high <= 255:
            return np.round(array).astype(np.uint8)
        raise ImageLoadError(what, f"float pixel values in [{low:g}, {high:g}]; "
                             "expected [0, 1] (or [0, 255]). Scale the image first.")
    raise ImageLoadError(what, f"unsupported pixel type {array.dtype}.")


def _composite_on_white(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Blend ``uint8`` colour (``HxWxC``) over white with a ``uint8`` alpha (``HxW``)."""
    a = alpha.astype(np.float32)[..., None] / 255.0
    return np.round(color.astype(np.float32) * a + 255.0 * (1.0 - a)).astype(np.uint8)


def _array_to_rgb(array: np.ndarray, bgr: bool, what: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and min(array.shape[1:]) > 4:
        raise ImageLoadError(what, "looks channels-first (CxHxW); pass array.transpose(1, 2, 0) (HxWxC).")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (2, 3, 4)):
        raise ImageLoadError(what, f"expected an HxW, HxWx1, HxWx2, HxWx3 or HxWx4 array, got shape {array.shape}.")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageLoadError(what, f"the image is empty (shape {array.shape}).")
    array = _to_uint8(array, what)
    if array.ndim == 2:
        return np.ascontiguousarray(np.repeat(array[..., None], 3, axis=2))
    channels = array.shape[-1]
    if channels == 2:  # gray + alpha
        gray = _composite_on_white(array[..., :1], array[..., 1])
        return np.ascontiguousarray(np.repeat(gray, 3, axis=2))
    color = array[..., :3][..., ::-1] if bgr else array[..., :3]
    if channels == 4:
        color = _composite_on_white(color, array[..., 3])
    return np.ascontiguousarray(color)


# --------------------------------------------------------------------------- PIL


def _pil_to_rgb(image: Any, what: str) -> np.ndarray:
    """Convert a decoded PIL image of any mode to an RGB ``uint8`` array."""
    mode = image.mode
    if mode == "RGB":
        return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        return _pil_to_rgb(image, what)
    if mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        return _array_to_rgb(np.asarray(image.convert("RGBA")), False, what)
    if mode in ("L", "1"):
        return _array_to_rgb(np.asarray(image.convert("L")), False, what)
    if mode.startswith("I;16") or mode == "I":
        data = np.asarray(image).astype(np.int64)
        return _array_to_rgb(np.clip(data, 0, 65535).astype(np.uint16), False, what)
    if mode == "F":
        return _array_to_rgb(np.asarray(image, dtype=np.float32), False, what)
    try:  # CMYK, YCbCr, LAB, HSV and anything else PIL knows how to convert
        return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))
    except (ValueError, OSError) as err:
        raise ImageLoadError(what, f"cannot convert PIL mode {mode!r} to RGB ({err}).") from err


@contextmanager
def _pil_pixel_limit(max_pixels: int | None) -> Iterator[None]:
    """Let PIL open files up to ``max_pixels`` quietly: our own check replaces its warning and error."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        limit = Image.MAX_IMAGE_PIXELS
        if limit is None or (max_pixels is not None and max_pixels < 2 * limit):
            yield
            return
        with _PIL_LIMIT_LOCK:  # rare: the caller allows more than PIL's hard limit (2 x MAX_IMAGE_PIXELS)
            previous = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = max_pixels
            try:
                yield
            finally:
                Image.MAX_IMAGE_PIXELS = previous


def _too_big(what: str, size: str, max_pixels: int | None) -> ImageLoadError:
    return ImageLoadError(
        what, f"{size} exceeds the limit of {max_pixels:,} pixels (a guard against decompression bombs). "
        "If you trust the file, raise the limit (load_image(..., max_pixels=N), or None for no limit) "
        "or downscale it first."
    )


def _check_pixels(width: int, height: int, max_pixels: int | None, what: str) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise _too_big(what, f"{width}x{height} = {width * height:,} pixels", max_pixels)


_SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF8": "GIF", b"BM": "BMP",
               b"II*\x00": "TIFF", b"MM\x00*": "TIFF", b"RIFF": "WebP"}


def _signature(path: Path) -> str | None:
    """The image format a file's first bytes announce, if any."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError:
        return None
    return next((kind for magic, kind in _SIGNATURES.items() if head.startswith(magic)), None)


def _load_file(path: Path, max_pixels: int | None) -> np.ndarray:
    from PIL import Image, ImageOps, UnidentifiedImageError

    what = str(path)
    if not path.exists():
        raise ImageLoadError(what, "no such file.")
    if path.is_dir():
        raise ImageLoadError(what, "is a folder, not an image file (use iter_image_paths to list its images).")
    if path.stat().st_size == 0:
        raise ImageLoadError(what, "the file is empty (0 bytes).")
    try:
        with _pil_pixel_limit(max_pixels), Image.open(path) as image:
            _check_pixels(image.width, image.height, max_pixels, what)
            image.load()
            upright: Image.Image = image
            try:
                upright = ImageOps.exif_transpose(image)
            except (OSError, ValueError, SyntaxError, KeyError, TypeError, ZeroDivisionError):
                pass  # a broken EXIF block: keep the pixels as stored
            return _pil_to_rgb(upright, what)
    except ImageLoadError:
        raise
    except UnidentifiedImageError as err:
        kind = _signature(path)
        if kind:
            raise ImageLoadError(what, f"starts like a {kind} file but is truncated or corrupt.") from err
        raise ImageLoadError(what, "not an image file (or a format Pillow cannot read).") from err
    except Image.DecompressionBombError as err:
        raise _too_big(what, "the image size", max_pixels) from err
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as err:
        raise ImageLoadError(what, f"the image is truncated or corrupt ({err}).") from err


# --------------------------------------------------------------------------- public


def load_image(source: Any, *, bgr: bool = False, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode ``source`` into an ``HxWx3`` RGB ``uint8`` array.

    Args:
        source: a file path (``str`` / ``Path``), a PIL image, or a numpy array.
        bgr: the numpy array's colour channels are BGR(A) (OpenCV order); ignored for files and PIL images.
        max_pixels: refuse files with more pixels than this before decoding them (``None``: no limit).

    Raises:
        ImageLoadError: a missing, unreadable, truncated or oversized file, a URL, or an unusable array.
    """
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        if isinstance(text, str) and _is_url(text):
            raise _url_error(text)
        return _load_file(Path(text).expanduser(), max_pixels)
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source, bgr, f"array of shape {source.shape}")
    from PIL import Image  # a dependency (decodes every file)

    if isinstance(source, Image.Image):
        return _pil_to_rgb(source, f"PIL image ({source.mode}, {source.width}x{source.height})")
    if hasattr(source, "__array__"):
        return _array_to_rgb(np.asarray(source), bgr, f"{type(source).__name__} input")
    raise ImageLoadError(f"a {type(source).__name__}", "cannot read an image from it; "
                         "pass a file path, a PIL image or an HxWx3 numpy array.")


def _is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def _folder_images(folder: Path, recursive: bool) -> list[Path]:
    pattern = "**/*" if recursive else "*"
    return [p for p in folder.glob(pattern)
            if _is_image_file(p) and not any(part.startswith(".") for part in p.relative_to(folder).parts)]


def iter_image_paths(inputs: Sequence[str | os.PathLike], recursive: bool = True) -> list[Path]:
    """Expand files, folders and glob patterns into a sorted, de-duplicated list of image files.

    Folders and globs contribute files with an image extension (:data:`IMAGE_EXTENSIONS`,
    hidden files and folders skipped); a file named explicitly is always kept, whatever
    its extension, so a broken or mislabelled file is reported later rather than
    silently dropped.

    Raises:
        ImageLoadError: an input that is a URL, or matches no file, folder or glob.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    found: dict[Path, Path] = {}
    for item in inputs:
        text = os.fspath(item)
        if _is_url(text):
            raise _url_error(text)
        path = Path(text).expanduser()
        if path.is_file():
            candidates = [path]
        elif path.is_dir():
            candidates = _folder_images(path, recursive)
        elif glob.has_magic(text):
            matches = [Path(m) for m in glob.glob(os.path.expanduser(text), recursive=recursive)]
            if not matches:
                raise ImageLoadError(text, "the pattern matches no file.")
            candidates = [p for m in matches for p in (_folder_images(m, recursive) if m.is_dir() else [m])
                          if p.suffix.lower() in IMAGE_EXTENSIONS]
        else:
            raise ImageLoadError(text, "no such file or folder (check the path, or quote a glob pattern).")
        for candidate in candidates:
            found.setdefault(candidate.resolve(), candidate)
    return sorted(found.values(), key=lambda p: str(p))
