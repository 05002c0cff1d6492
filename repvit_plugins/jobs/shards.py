"""Labelling with several processes: each rank takes a disjoint, deterministic share of the sorted images.

Under ``torchrun`` (``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` set) the ranks join a
gloo process group only to wait for each other and pool their summaries; rank 0
then assembles the outputs from everyone's records. ``--shard R/W`` runs one share
alone, without a process group (e.g. to rerun a killed rank); a merge step
assembles afterwards. Nothing is scheduled here: shares are fixed by the sorted list.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # the labeler (numpy, the exporters) is imported only where it is used
    from .labeler import Summary

__all__ = ["Shard", "parse_shard"]

BARRIER_TIMEOUT = datetime.timedelta(days=7)
"""How long finished ranks wait for the slowest (labelling a big share takes hours)."""


@dataclass(frozen=True)
class Shard:
    """Which share of the images this process labels, and whether it joins a process group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    launched: bool = False  # started by torchrun: wait for the others, rank 0 assembles

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"shard rank must be in 0..{self.world_size - 1}; got {self.rank}")

    @classmethod
    def from_env(cls) -> "Shard":
        """The shard ``torchrun`` describes in the environment (a single share without it)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        return cls(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")), launched=True)

    @property
    def assembles(self) -> bool:
        """Whether this process writes the assembled outputs at the end of its run."""
        return self.world_size == 1 or (self.launched and self.rank == 0)

    def share(self, paths: Sequence[Path]) -> list[Path]:
        """Every ``world_size``-th image of the sorted list, from ``rank``: disjoint, and all of them together."""
        from .labeler import sorted_paths

        return sorted_paths(paths)[self.rank::self.world_size]

    def device(self, device: str | None) -> str | None:
        """``device`` as given, else one GPU per local rank when there are GPUs (``None``: the default)."""
        if device is not None or not self.launched:
            return device
        import torch

        return f"cuda:{self.local_rank}" if torch.cuda.is_available() else None

    def join(self) -> None:
        """Join the ranks' gloo process group (under torchrun; before labelling, so a bad set-up fails at once)."""
        import torch.distributed as dist

        if self.launched and not dist.is_initialized():
            dist.init_process_group(backend="gloo", timeout=BARRIER_TIMEOUT)

    def gather(self, summary: Summary) -> list[Summary]:
        """All ranks' summaries (after every rank has finished labelling); the own one alone without a group."""
        if not self.launched:
            return [summary]
        import torch.distributed as dist

        from .labeler import Summary

        self.join()
        parts: list = [None] * self.world_size
        dist.all_gather_object(parts, asdict(summary))  # also the barrier: nobody passes before all have labelled
        return [Summary(**part) for part in parts]

    def close(self) -> None:
        """Leave the process group, if this process joined one."""
        import torch.distributed as dist

        if self.launched and dist.is_initialized():
            dist.destroy_process_group()


def parse_shard(text: str) -> Shard:
    """``'R/W'`` (e.g. ``'1/4'``: the second of four shares) as a :class:`Shard` run alone."""
    try:
        rank, world = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard takes RANK/WORLD_SIZE, e.g. 1/4; got {text!r}") from None
    if world < 1:
        raise ValueError(f"--shard world size must be >= 1; got {world}")
    return Shard(rank, world)
