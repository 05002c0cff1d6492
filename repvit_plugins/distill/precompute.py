"""Run the teacher once over a dataset and store its embeddings (resumable; see :mod:`.embedding_cache`)."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Mapping

import torch

from .embedding_cache import EmbeddingCache
from .teachers import build_teacher, teacher_name

if TYPE_CHECKING:  # segment_anything ships no types: mypy sees its classes as Any
    from segment_anything.modeling import Sam

__all__ = ["cache_meta", "precompute_embeddings"]


def cache_meta(teacher: Mapping, img_size: int, dtype: str = "float16", out_chans: int = 256) -> dict:
    """What a cache of ``teacher``'s embeddings holds (written to and checked against ``meta.json``)."""
    spec = {k: v for k, v in teacher.items() if k in ("model_type", "checkpoint", "arch", "vit")}
    return dict(teacher=teacher_name(**spec), img_size=img_size, dtype=dtype,
                shape=[out_chans, img_size // 16, img_size // 16])


def _collate(batch: list[dict]) -> tuple[list[str], torch.Tensor]:
    return [item["data_samples"].key for item in batch], torch.stack([item["inputs"] for item in batch])


@torch.inference_mode()
def precompute_embeddings(dataset, teacher: Mapping | Sam, cache_dir: str | os.PathLike, *,
                          batch_size: int = 8, shard_size: int = 64, dtype: str = "float16",
                          device: str | torch.device = "cpu", num_workers: int = 0, part: int = 0, parts: int = 1,
                          amp: bool = False, progress: bool = True, meta: Mapping | None = None) -> dict:
    """Embed every image of ``dataset`` (a :class:`SamDistillDataset` without cache) not yet in the cache.

    Args:
        teacher: :func:`build_teacher` arguments, or a built teacher (then pass ``meta``).
        part, parts: this process embeds images ``i`` with ``i % parts == part`` (one process per GPU).
        amp: run the teacher under bfloat16 autocast (faster, embeddings within about 1e-2).
    Returns:
        ``dict(embedded=new images this run, cached=images already there, total=images of this part)``.
    """
    if not 0 <= part < parts:
        raise ValueError(f"part must be in 0..{parts - 1}, got {part}")
    if isinstance(teacher, Mapping):
        meta = meta or cache_meta(teacher, dataset.img_size, dtype)
        teacher = build_teacher(**{**teacher, "img_size": dataset.img_size, "with_encoder": True})
    elif meta is None:
        raise ValueError("pass meta= (see cache_meta) when giving a built teacher")
    cache = EmbeddingCache(cache_dir, meta)
    mine = [i for i in range(len(dataset)) if i % parts == part]
    todo = [i for i in mine if dataset.get_data_info(i)["key"] not in cache]
    stats = dict(embedded=0, cached=len(mine) - len(todo), total=len(mine))
    if not todo:
        return stats
    encoder = teacher.image_encoder.to(device).eval()
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, todo), batch_size=batch_size,
                                         num_workers=num_workers, collate_fn=_collate)
    from tqdm.auto import tqdm

    device_type = torch.device(device).type
    with cache.writer(f"part{part}", shard_size) as writer, \
            tqdm(total=len(mine), initial=stats["cached"], unit="img", desc="teacher embeddings",
                 disable=not progress) as bar:
        for keys, images in loader:
            with torch.autocast(device_type, dtype=torch.bfloat16, enabled=amp):
                embeddings = encoder(images.to(device))
            writer.add(keys, embeddings.float())
            stats["embedded"] += len(keys)
            bar.update(len(keys))
    return stats
