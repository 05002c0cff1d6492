"""Read ``.safetensors`` checkpoints into process memory instead of memory-mapping them.

transformers loads ``model.safetensors`` as views into a memory map of the file. When the weights are then cast
to bf16, the float32 file pages stay resident for as long as any tensor views them (the layers left in float32,
and tensors transformers keeps outside the model): 0.57 GB of dead pages for grounding-dino-tiny. Reading the
file with plain reads into tensors that own their memory lets the cast free the float32 copies instead.

Large tensors get their own anonymous memory (as glibc's default ``malloc`` would give them), so that memory goes
back to the system when the cast frees them, also under :func:`~repvit_plugins.runtime.malloc_tuning.tune_allocator`,
which keeps freed heap memory in the process.
"""
from __future__ import annotations

import io
import json
import mmap
import sys
from pathlib import Path
from typing import Any

import torch

__all__ = ["SAFETENSORS_DTYPES", "read_safetensors"]

SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
"""The safetensors dtype names :func:`read_safetensors` reads, and their torch dtypes."""
OWN_PAGES_BYTES = 1 << 20
"""Tensors of at least this many bytes are read into their own anonymous pages, smaller ones into the heap."""


def _read_tensor(file: io.BufferedReader, shape: list[int], dtype: torch.dtype, size: int) -> torch.Tensor | None:
    """The next ``size`` bytes of ``file`` as a tensor; ``None`` if the file ends first."""
    if size >= OWN_PAGES_BYTES:
        pages = mmap.mmap(-1, size)  # freed (unmapped) with the last tensor that uses it
        tensor = torch.frombuffer(pages, dtype=torch.uint8).view(dtype).reshape(shape)
        buffer: Any = pages
    else:
        tensor = torch.empty(shape, dtype=dtype)
        buffer = tensor.reshape(-1).view(torch.uint8).numpy()
    return tensor if file.readinto(buffer) == size else None


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of the ``.safetensors`` file at ``path``, each in its own memory (no map of the file is kept).

    Peak memory is one copy of the weights: each tensor is allocated once and the file read straight into it.
    The tensors are writable and independent: freeing one frees its memory.

    Raises:
        ValueError: the file is truncated, holds a dtype outside :data:`SAFETENSORS_DTYPES`, or this machine is
            big-endian (safetensors stores little-endian bytes).
    """
    if sys.byteorder != "little":
        raise ValueError("read_safetensors reads little-endian tensors on little-endian machines only")
    tensors: dict[str, torch.Tensor] = {}
    with open(path, "rb") as file:
        header_size = int.from_bytes(file.read(8), "little")
        header = json.loads(file.read(header_size))
        header.pop("__metadata__", None)
        for name, entry in sorted(header.items(), key=lambda item: item[1]["data_offsets"][0]):
            if entry["dtype"] not in SAFETENSORS_DTYPES:
                raise ValueError(f"{path}: tensor {name} has dtype {entry['dtype']}, which read_safetensors "
                                 f"does not read ({', '.join(SAFETENSORS_DTYPES)})")
            start, end = entry["data_offsets"]
            file.seek(8 + header_size + start)
            tensor = _read_tensor(file, entry["shape"], SAFETENSORS_DTYPES[entry["dtype"]], end - start)
            if tensor is None:
                raise ValueError(f"{path} is truncated: tensor {name} has fewer than {end - start} bytes")
            tensors[name] = tensor
    return tensors
