"""Files in and out: robust decoding of images into RGB ``uint8`` arrays (``images``), atomic writes (``atomic``)."""
from .images import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, ImageLoadError, iter_image_paths, load_image

__all__ = ["DEFAULT_MAX_PIXELS", "IMAGE_EXTENSIONS", "ImageLoadError", "iter_image_paths", "load_image"]
