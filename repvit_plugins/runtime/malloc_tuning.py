"""glibc malloc tuning: keep freed memory in the heap instead of returning it to the OS.

With glibc's default ``malloc`` every large tensor is a fresh ``mmap`` that is
returned on free, so PyTorch on CPU page-faults its way through each forward
pass (hundreds of thousands of faults per RepViT-SAM encoder run).
:func:`tune_allocator` keeps freed memory in the heap instead: the equivalent
of ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000``, applied from
Python with ``mallopt``. The cost is a higher resident set: memory freed by
PyTorch stays with the process for reuse.

Set ``REPVIT_PLUGINS_NO_MALLOC_TUNING=1`` to leave the allocator alone.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["tune_allocator", "allocator_tuned", "OPT_OUT_ENV", "ENV_SETTINGS"]

OPT_OUT_ENV = "REPVIT_PLUGINS_NO_MALLOC_TUNING"
ENV_SETTINGS = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000"}
_M_TRIM_THRESHOLD = -1  # <malloc.h>
_M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1  # mallopt takes an int: the largest trim threshold it can set (2 GiB)

_state: dict[str, bool] = {}


def _glibc():
    """The C library if it is glibc, else ``None`` (musl, macOS, Windows)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()
    except (OSError, AttributeError):
        return None
    return libc


def tune_allocator(force: bool = False) -> bool:
    """Stop glibc from returning freed memory to the OS; returns whether the settings are in effect.

    Idempotent. A no-op off glibc, when ``REPVIT_PLUGINS_NO_MALLOC_TUNING`` is set
    (unless ``force``), or when the ``MALLOC_*`` variables already set these.
    """
    if _state.get("tuned"):
        return True
    if os.environ.get(OPT_OUT_ENV, "").strip() not in ("", "0") and not force:
        return False
    if all(os.environ.get(name) == value for name, value in ENV_SETTINGS.items()):
        _state["tuned"] = True  # glibc read them at start-up
        return True
    libc = _glibc()
    if libc is None:
        return False
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _INT_MAX))
    _state["tuned"] = ok
    return ok


def allocator_tuned() -> bool:
    """Whether :func:`tune_allocator` (or the equivalent environment) is in effect."""
    return bool(_state.get("tuned"))
