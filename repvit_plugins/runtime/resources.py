"""Files the package reads at run time: the OpenMMLab configs and the demo's example photos.

An installed wheel carries them in ``repvit_plugins/.mim/`` (``setup.py`` copies ``configs/`` and ``demo/images``
there, as OpenMMLab packages carry theirs); a checkout (an editable install) reads them where they are.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["config_path", "configs_root", "example_images_dir"]

_PACKAGE = Path(__file__).resolve().parents[1]
_INSTALLED = _PACKAGE / ".mim"
_CHECKOUT = _PACKAGE.parent


def _root(*parts: str) -> Path:
    installed = _INSTALLED.joinpath(*parts)
    return installed if installed.is_dir() else _CHECKOUT.joinpath(*parts)


def configs_root() -> Path:
    """The folder of the project's configs (``mask_rcnn/``, ``rtmdet_ins/``, ``sem_fpn/``, ...)."""
    return _root("configs")


def config_path(relative: str) -> Path:
    """A config by its path under ``configs/``, e.g. ``'rtmdet_ins/rtmdet-ins_repvit-m0.9_8xb32-300e_coco.py'``."""
    return configs_root() / relative


def example_images_dir() -> Path:
    """The demo's example photos."""
    return _root("demo", "images")
