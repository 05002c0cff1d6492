"""The network, asked once and quickly: is a download host reachable, is a hub model cached, go offline.

huggingface_hub retries an unreachable hub for minutes; a connection probe with a
short timeout answers in seconds, and :func:`use_hub_offline` then makes the
process read only the local cache.
"""
from __future__ import annotations

import functools
import os
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable
from urllib.parse import urlsplit

from ..runtime.switches import env_switch

__all__ = ["PROBE_TIMEOUT", "cached_hub_model", "hub_endpoint", "hub_offline", "looks_like_local_path", "reachable",
           "reachable_hosts", "use_hub_offline"]

PROBE_TIMEOUT = 3.0
"""Seconds a connection probe waits for a host."""



def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def looks_like_local_path(spec: str) -> bool:
    """Whether a model spec that is not on disk was meant as a local path rather than a hub id (``org/name``)."""
    return (Path(spec).expanduser().is_absolute() or spec.startswith((".", "~")) or spec.count("/") > 1
            or (os.sep != "/" and os.sep in spec))


def hub_offline() -> bool:
    """Whether the Hugging Face hub must not be asked (``HF_HUB_OFFLINE``, ``TRANSFORMERS_OFFLINE`` or
    ``REPVIT_PLUGINS_OFFLINE``)."""
    return any(env_switch(name)
               for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "REPVIT_PLUGINS_OFFLINE"))


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


@functools.lru_cache(maxsize=None)
def _probe(host: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def reachable(url: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether a TCP connection to ``url``'s host opens within ``timeout`` seconds (remembered per host)."""
    host, port = _host_port(url)
    return bool(host) and _probe(host, port, timeout)


def reachable_hosts(urls: Iterable[str], timeout: float = PROBE_TIMEOUT) -> dict[str, bool]:
    """:func:`reachable` for several URLs at once (the probes run in parallel)."""
    urls = list(dict.fromkeys(urls))
    with ThreadPoolExecutor(max_workers=max(1, len(urls))) as pool:
        return dict(zip(urls, pool.map(lambda u: reachable(u, timeout), urls)))


def use_hub_offline() -> None:
    """Make this process read Hugging Face models from the local cache only (no retries on a dead network)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    if "huggingface_hub.constants" in sys.modules:  # already imported: it read the variable at import time
        from huggingface_hub import constants

        constants.HF_HUB_OFFLINE = True


def cached_hub_model(repo_id: str) -> Path | None:
    """The cached snapshot folder of a hub model (holding ``config.json``), or ``None``."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json")
    return Path(found).parent if isinstance(found, str) else None
