"""Images in: robust decoding of files, PIL images and arrays into RGB ``uint8`` arrays."""
from .images import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, ImageLoadError, iter_image_paths, load_image

__all__ = ["DEFAULT_MAX_PIXELS", "IMAGE_EXTENSIONS", "ImageLoadError", "iter_image_paths", "load_image"]
