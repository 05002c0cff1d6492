"""Silence third-party code that talks through stdout, warnings and the root logger."""
from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def quietly(*, stdout: bool = True, root_logger: bool = False) -> Iterator[None]:
    """Inside the block, ignore warnings, and swallow stdout (``stdout``) and root-logger records below ERROR.

    For libraries that print hints on every call (model builders, exporters,
    quantizers); their exceptions still propagate.
    """
    root = logging.getLogger()
    level = root.level
    if root_logger:
        root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), (contextlib.redirect_stdout(io.StringIO()) if stdout
                                         else contextlib.nullcontext()):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)
