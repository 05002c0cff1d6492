"""Peak resident memory of this process, measured one way for every benchmark."""
from __future__ import annotations

import resource
from pathlib import Path

__all__ = ["peak_rss_bytes"]


def peak_rss_bytes() -> int:
    """This process's peak resident set size in bytes.

    ``VmHWM`` of ``/proc/self/status`` where there is one (Linux): it belongs to the current address space, so it
    forgets the peak of an image replaced by ``execv`` (``runtime.malloc_tuning.tune_allocator`` may re-exec), which
    ``ru_maxrss`` would carry over. Elsewhere ``ru_maxrss`` (kB on Linux, bytes on macOS).
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024
