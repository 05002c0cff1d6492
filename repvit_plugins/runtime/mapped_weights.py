"""Let go of a memory-mapped checkpoint file once its weights have been copied or cast.

transformers loads ``model.safetensors`` as views into a memory map of the file: in float32 those pages are the
model's weights (nothing is copied). After the weights are cast to bf16, the map is dead weight (0.57 GB of
resident file pages for grounding-dino-tiny), yet it stays mapped while any tensor still views it: the layers
left in float32 (norms, embeddings) and a few tensors transformers keeps outside the model. Linux only (it reads
``/proc/self/maps``); elsewhere a no-op.
"""
from __future__ import annotations

import gc
from pathlib import Path

import torch

__all__ = ["mapped_files", "copy_out_of_maps"]

MapRange = tuple[int, int, str]


def mapped_files(suffix: str = ".safetensors") -> set[MapRange]:
    """``(start, end, path)`` of this process's memory maps of files whose name ends with ``suffix``."""
    try:
        lines = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return set()
    ranges = set()
    for line in lines:
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5].endswith(suffix):
            start, end = (int(address, 16) for address in fields[0].split("-"))
            ranges.add((start, end, fields[5]))
    return ranges


@torch.no_grad()
def copy_out_of_maps(ranges: set[MapRange]) -> int:
    """Copy every live CPU tensor that views one of ``ranges`` into process memory; how many were copied.

    Tensors that viewed the same bytes (same address, shape, strides and dtype) share one copy, so tied weights
    stay tied. When no tensor views the map any more, the file is unmapped.
    """
    if not ranges:
        return 0

    def in_map(tensor: torch.Tensor) -> bool:
        try:
            address = tensor.data_ptr()
        except RuntimeError:  # a tensor without storage (meta, sparse, ...)
            return False
        return any(start <= address < end for start, end, _ in ranges)

    viewing = [obj for obj in gc.get_objects()
               if isinstance(obj, torch.Tensor) and obj.device.type == "cpu" and in_map(obj)]
    copies: dict[tuple, torch.Tensor] = {}
    for tensor in viewing:
        key = (tensor.data_ptr(), tuple(tensor.shape), tuple(tensor.stride()), tensor.dtype)
        if key not in copies:
            copies[key] = tensor.data.clone()
        tensor.data = copies[key]
    count = len(viewing)
    del viewing, copies
    gc.collect()
    return count
