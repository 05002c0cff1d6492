"""Teacher image embeddings on disk: sharded, atomic, resumable, each image stored once.

Layout of a cache folder::

    meta.json                 teacher, input size, embedding shape and dtype (checked on every open)
    shards/<writer>-000000.pt {'keys': [...], 'embeddings': N x C x H x W}, written whole or not at all
    index-<writer>.jsonl      one line per finished shard: {"shard": ..., "keys": [...]}

Shards are the source of truth. A shard is written to a temporary file, flushed to
disk and renamed into place (``io.atomic.atomic_write_bytes``), so it exists
complete or not at all; its line is then appended to the writer's index. A process
killed between the rename and the index line leaves a shard that the next open finds
and indexes from the shard itself, so its images are never embedded again; a process
killed while writing leaves only a hidden ``.*.tmp`` file, which the next writer
deletes. Each writer (``part``) has its own shard names and index file, so several
processes (one per GPU) can fill one cache.

Shards are read memory-mapped with ``torch.load(weights_only=True, mmap=True)``:
reading one embedding touches only its pages.
"""
from __future__ import annotations

import io
import json
import os
import re
from collections import OrderedDict
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import torch

from ..io.atomic import atomic_write_bytes, atomic_write_text

__all__ = ["CacheError", "EmbeddingCache", "ShardWriter"]

FORMAT_VERSION = 1
_KILL_ENV = "REPVIT_PLUGINS_TEST_SIGKILL_AFTER"
"""Test hook: SIGKILL the writing process once this many images sit in renamed but not yet indexed shards."""


class CacheError(RuntimeError):
    """The cache folder is missing, belongs to another teacher or lacks images; the message says what to run."""


def _read_index(path: Path) -> list[dict]:
    """Complete lines of one index file; a torn last line (killed mid-append) is skipped."""
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and "shard" in entry and "keys" in entry:
            entries.append(entry)
    return entries


def _load_shard(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)


class EmbeddingCache:
    """A folder of teacher embeddings keyed by image name (the image path relative to the data root).

    Args:
        root: the cache folder (created when ``meta`` is given).
        meta: what the embeddings are (``teacher``, ``img_size``, ``shape``, ``dtype``). Given, it is
            written on first use and must equal the stored one afterwards; ``None`` opens an existing
            cache read-only.
        max_open_shards: memory-mapped shards kept open by :meth:`get`.
    """

    def __init__(self, root: str | os.PathLike, meta: Mapping | None = None, *, max_open_shards: int = 32):
        self.root = Path(root).expanduser()
        self.shard_dir = self.root / "shards"
        self.meta = self._open_meta(dict(meta) if meta is not None else None)
        self.max_open_shards = max_open_shards
        self._open: OrderedDict[str, dict] = OrderedDict()
        self.location: dict[str, tuple[str, int]] = {}
        self.duplicates: list[str] = []
        self.refresh()

    # ------------------------------------------------------------------ opening
    def _open_meta(self, meta: dict | None) -> dict:
        path = self.root / "meta.json"
        if path.is_file():
            stored = json.loads(path.read_text(encoding="utf-8"))
            wanted = {**meta, "format": FORMAT_VERSION} if meta is not None else stored
            if meta is not None and stored != wanted:
                diff = {k: (stored.get(k), wanted.get(k)) for k in set(stored) | set(wanted)
                        if stored.get(k) != wanted.get(k)}
                raise CacheError(
                    f"{self.root} holds embeddings of another setting (stored vs wanted: {diff}). "
                    "Use a new cache folder for this teacher / image size, or delete the old one."
                )
            return stored
        if meta is None:
            raise CacheError(
                f"{self.root} is not an embedding cache (no meta.json). Fill it first: "
                "python tools/precompute_sam_embeddings.py --help"
            )
        self.shard_dir.mkdir(parents=True, exist_ok=True)
        meta = {**meta, "format": FORMAT_VERSION}
        atomic_write_text(path, json.dumps(meta, indent=1, sort_keys=True))
        return meta

    def refresh(self) -> None:
        """Re-read the indexes and index any finished shard an index line is missing for."""
        location: dict[str, tuple[str, int]] = {}
        duplicates: list[str] = []
        indexed: set[str] = set()

        def add(shard: str, keys: Sequence[str]) -> None:
            for row, key in enumerate(keys):
                if key in location:
                    duplicates.append(key)
                else:
                    location[key] = (shard, row)

        for index in sorted(self.root.glob("index-*.jsonl")):
            for entry in _read_index(index):
                if entry["shard"] not in indexed and (self.shard_dir / entry["shard"]).is_file():
                    indexed.add(entry["shard"])
                    add(entry["shard"], entry["keys"])
        for shard in sorted(self.shard_dir.glob("*.pt")):
            if shard.name not in indexed:  # renamed into place, killed before its index line
                add(shard.name, _load_shard(shard)["keys"])
        self.location, self.duplicates = location, duplicates

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return len(self.location)

    def __contains__(self, key: object) -> bool:
        return key in self.location

    def keys(self) -> Iterable[str]:
        return self.location.keys()

    def missing(self, keys: Iterable[str]) -> list[str]:
        """The keys among ``keys`` that have no embedding yet."""
        return [k for k in keys if k not in self.location]

    def get(self, key: str, shard: str | None = None, row: int | None = None) -> torch.Tensor:
        """The embedding of ``key`` (``C x H x W``, stored dtype); ``shard``/``row`` skip the lookup."""
        if shard is None or row is None:
            try:
                shard, row = self.location[key]
            except KeyError:
                raise CacheError(
                    f"no teacher embedding for {key!r} in {self.root}; run "
                    "python tools/precompute_sam_embeddings.py for this dataset (it resumes where it stopped)"
                ) from None
        data = self._open.get(shard)
        if data is None:
            data = self._open[shard] = _load_shard(self.shard_dir / shard)
            if len(self._open) > self.max_open_shards:
                self._open.popitem(last=False)
        else:
            self._open.move_to_end(shard)
        if data["keys"][row] != key:
            raise CacheError(f"{shard} row {row} holds {data['keys'][row]!r}, not {key!r}: the index is stale. "
                             "Rebuild the dataset (it re-reads the index) or re-run the precompute tool.")
        return data["embeddings"][row].clone()

    def __getstate__(self) -> dict:  # dataloader workers open their own memory maps
        state = self.__dict__.copy()
        state["_open"] = OrderedDict()
        return state

    # ------------------------------------------------------------------ writing
    def writer(self, name: str = "part0", shard_size: int = 64) -> "ShardWriter":
        """A :class:`ShardWriter` adding shards named ``<name>-NNNNNN.pt`` and indexing them."""
        return ShardWriter(self, name, shard_size)


class ShardWriter:
    """Buffers embeddings and commits them as whole shards (see the module docstring).

    Use as a context manager, or call :meth:`close` to commit the last, partial shard.
    """

    def __init__(self, cache: EmbeddingCache, name: str, shard_size: int = 64):
        if not re.fullmatch(r"[A-Za-z0-9_.]+", name):
            raise ValueError(f"writer name must be letters, digits, '_' or '.', got {name!r}")
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}")
        self.cache, self.name, self.shard_size = cache, name, shard_size
        self.index_path = cache.root / f"index-{name}.jsonl"
        self._keys: list[str] = []
        self._rows: list[torch.Tensor] = []
        self.committed = 0
        self._kill_after = int(os.environ.get(_KILL_ENV, "0") or 0)
        self._recover()

    def _recover(self) -> None:
        """Delete this writer's torn temporaries; write index lines for its unindexed shards."""
        for tmp in self.cache.shard_dir.glob(f".{self.name}-*.tmp"):
            tmp.unlink()
        indexed = set()
        if self.index_path.is_file():
            indexed = {e["shard"] for e in _read_index(self.index_path)}
            with open(self.index_path, "rb+") as handle:  # end a torn last line so new lines stay whole
                if handle.seek(0, os.SEEK_END):
                    handle.seek(-1, os.SEEK_END)
                    if handle.read(1) != b"\n":
                        handle.write(b"\n")
        mine = sorted(self.cache.shard_dir.glob(f"{self.name}-*.pt"))
        for shard in mine:
            if shard.name not in indexed:
                self._append_index(shard.name, _load_shard(shard)["keys"])
        numbers = [int(p.stem.rsplit("-", 1)[1]) for p in mine]
        self._next = max(numbers, default=-1) + 1

    def _append_index(self, shard: str, keys: Sequence[str]) -> None:
        line = json.dumps({"shard": shard, "keys": list(keys)}) + "\n"
        with open(self.index_path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def add(self, keys: Sequence[str], embeddings: torch.Tensor) -> None:
        """Queue embeddings (``N x C x H x W``) of ``keys``; full shards are committed at once."""
        if len(keys) != len(embeddings):
            raise ValueError(f"{len(keys)} keys but {len(embeddings)} embeddings")
        shape = list(self.cache.meta["shape"])
        if list(embeddings.shape[1:]) != shape:
            raise CacheError(f"embeddings of shape {tuple(embeddings.shape[1:])} do not match the cache's {shape}")
        dtype = getattr(torch, self.cache.meta["dtype"])
        self._keys.extend(keys)
        self._rows.extend(embeddings.detach().to("cpu", dtype))
        while len(self._keys) >= self.shard_size:
            self._commit(self.shard_size)

    def _commit(self, count: int) -> None:
        keys, rows = self._keys[:count], self._rows[:count]
        del self._keys[:count], self._rows[:count]
        shard = f"{self.name}-{self._next:06d}.pt"
        self._next += 1
        buffer = io.BytesIO()
        torch.save({"keys": keys, "embeddings": torch.stack(rows)}, buffer)
        atomic_write_bytes(self.cache.shard_dir / shard, buffer.getvalue())
        self.committed += len(keys)
        if self._kill_after and self.committed >= self._kill_after:
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
        self._append_index(shard, keys)
        for row, key in enumerate(keys):
            self.cache.location.setdefault(key, (shard, row))

    def close(self) -> None:
        """Commit what is buffered."""
        if self._keys:
            self._commit(len(self._keys))

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()  # buffered embeddings are complete even when the loop stopped on an error
