"""Ending a ``torchrun`` worker process without Python's interpreter teardown.

gloo's worker threads free finished collectives after the main thread has moved on, and
a freed work that holds a Python object (DDP's gradient all-reduces, ``all_gather_object``)
takes the GIL; during teardown that ends the thread inside a C++ destructor: ``terminate
called without an active exception``, SIGABRT, and ``torchrun`` reports a failed run
although everything finished. :func:`end_worker_process` leaves before the teardown.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn

__all__ = ["end_worker_process"]


def end_worker_process(code: int = 0) -> NoReturn:
    """Destroy the process group (if any), flush the logs and standard streams, then ``os._exit(code)``.

    Only for the end of a worker's ``__main__``: nothing after it runs, atexit handlers included.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)
