"""One measurement per fresh process: a tool re-runs itself as a child and reads back one JSON ``RESULT`` line.

A fresh process per path keeps peak memory, allocator state and kernel caches from leaking between the
paths; the child prints its result with :func:`emit`, the parent reads it with :func:`run_child`.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = ["RESULT_PREFIX", "emit", "run_child"]

RESULT_PREFIX = "RESULT "


def emit(result: Mapping[str, Any]) -> None:
    """Print ``result`` as the child's result line (the last one printed wins)."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def run_child(script: str | Path, argv: Sequence[str], env: Mapping[str, str] | None = None,
              timeout: float | None = None) -> dict[str, Any]:
    """``python script *argv`` in a fresh process; its last result line, parsed.

    A child that exits non-zero, prints no result line or runs past ``timeout`` seconds is reported as a value,
    ``{"failed": "<why, with the end of its stderr>"}``, so one broken path never stops a benchmark.
    ``env`` is added to this process's environment.
    """
    try:
        done = subprocess.run([sys.executable, str(script), *argv], capture_output=True, text=True,
                              env={**os.environ, **(env or {})}, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"failed": f"timed out after {timeout} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode or not lines:
        why = f"exit {done.returncode}" if done.returncode else "no result line"
        return {"failed": f"{why}:\n{done.stderr[-3000:]}"}
    return json.loads(lines[-1][len(RESULT_PREFIX):])
