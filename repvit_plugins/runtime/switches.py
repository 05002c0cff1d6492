"""The one reading of on/off environment switches (``REPVIT_PLUGINS_OFFLINE``, ``REPVIT_PLUGINS_BF16``,
``HF_HUB_OFFLINE``, ...): ``1 / true / yes / on`` mean on, ``0 / false / no / off`` mean off, any case."""
from __future__ import annotations

import os

__all__ = ["env_switch"]

_ON = ("1", "true", "yes", "on")
_OFF = ("0", "false", "no", "off")


def env_switch(name: str) -> bool | None:
    """``True`` / ``False`` when ``name`` is set to an on / off word, ``None`` when unset, empty or anything else."""
    value = os.environ.get(name, "").strip().lower()
    return True if value in _ON else False if value in _OFF else None
