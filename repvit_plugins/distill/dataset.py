"""Images (a folder or the SA-1B layout) with SAM preprocessing and cached teacher embeddings.

Each item is ``dict(inputs=3 x S x S float tensor, data_samples=BaseDataElement)`` plus
``teacher_embed`` (``C x S/16 x S/16``) when the dataset has a ``cache_dir``. The
input is exactly what ``SamPredictor.set_image`` feeds the encoder: longest side
resized to ``img_size`` with ``ResizeLongestSide``, normalised with SAM's pixel
mean/std, zero-padded at the bottom/right to a square. ``data_samples`` carries
``key`` (the image path relative to ``data_root``, the cache key), ``input_size``
(resized ``(h, w)``), ``original_size`` and, with ``with_boxes=True`` on SA-1B,
``boxes`` (``N x 4`` xyxy in the resized frame, from the annotation file).
"""
from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from mmengine.dataset import BaseDataset
from mmengine.structures import BaseDataElement

from ..models.sam_parts import SAM_PIXEL_MEAN, SAM_PIXEL_STD
from .embedding_cache import CacheError, EmbeddingCache

__all__ = ["SamDistillDataset", "sam_preprocess", "list_images"]

LAYOUTS = ("auto", "folder", "sa1b")


def sam_preprocess(image: np.ndarray, img_size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """``H x W x 3`` uint8 RGB -> (normalised, padded ``3 x img_size x img_size`` tensor, resized ``(h, w)``)."""
    from segment_anything.utils.transforms import ResizeLongestSide

    resized = ResizeLongestSide(img_size).apply_image(image)
    x = torch.from_numpy(np.ascontiguousarray(resized)).permute(2, 0, 1).float()
    x = (x - torch.tensor(SAM_PIXEL_MEAN).view(3, 1, 1)) / torch.tensor(SAM_PIXEL_STD).view(3, 1, 1)
    h, w = x.shape[-2:]
    return torch.nn.functional.pad(x, (0, img_size - w, 0, img_size - h)), (int(h), int(w))


def _is_sa1b(image: Path) -> bool:
    return image.with_suffix(".json").is_file()


def list_images(data_root: str | os.PathLike, subdirs: Sequence[str] | None = None, ann_file: str | None = None,
                layout: str = "auto") -> tuple[list[Path], str]:
    """The images of a dataset (sorted) and the layout found (``'folder'`` or ``'sa1b'``).

    ``ann_file`` lists image paths relative to ``data_root``, one per line; otherwise every
    image under ``data_root`` (or under each of ``subdirs``) is taken. In the SA-1B layout
    (``sa_*/sa_N.jpg`` next to ``sa_N.json``) only images with an annotation file count.
    """
    from ..io.images import iter_image_paths

    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    root = Path(data_root).expanduser()
    if ann_file:
        lines = Path(ann_file).read_text(encoding="utf-8").splitlines()
        images = [root / line.strip() for line in lines if line.strip() and not line.startswith("#")]
        absent = [str(p) for p in images if not p.is_file()]
        if absent:
            raise FileNotFoundError(f"{len(absent)} images listed in {ann_file} are missing, e.g. {absent[:3]}")
    else:
        folders = [root / d for d in subdirs] if subdirs else [root]
        absent = [str(f) for f in folders if not f.is_dir()]
        if absent:
            raise FileNotFoundError(f"no such image folder: {', '.join(absent)} (check data_root and subdirs)")
        images = iter_image_paths(folders)
    if layout == "auto":
        layout = "sa1b" if any(map(_is_sa1b, images)) else "folder"
    if layout == "sa1b":
        images = [p for p in images if _is_sa1b(p)]
    if not images:
        raise FileNotFoundError(f"no images found under {root}" + (f" in {list(subdirs)}" if subdirs else ""))
    return images, layout


def _sa1b_boxes(json_path: str, max_boxes: int, seed: int) -> np.ndarray:
    """Up to ``max_boxes`` annotation boxes (xyxy, original pixels), a fixed random pick per image."""
    with open(json_path, encoding="utf-8") as handle:
        annotations = json.load(handle).get("annotations", [])
    boxes = [a["bbox"] for a in annotations if a.get("bbox") and a["bbox"][2] > 0 and a["bbox"][3] > 0]
    if len(boxes) > max_boxes:
        boxes = random.Random(seed).sample(boxes, max_boxes)
    xywh = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)


class SamDistillDataset(BaseDataset):
    """Distillation images with their teacher embeddings.

    Args:
        data_root: image folder, or the SA-1B root holding ``sa_000000/`` ... folders.
        img_size: SAM input side (1024 for SAM; must match teacher and student).
        cache_dir: embedding cache filled by ``tools/precompute_sam_embeddings.py``; ``None``
            yields no ``teacher_embed`` (the model then runs its teacher online).
        subdirs: sub-folders of ``data_root`` to use (SA-1B: ``['sa_000000', ..., 'sa_000009']`` is 1%).
        ann_file: text file of image paths relative to ``data_root`` (instead of scanning folders).
        layout: ``'auto'``, ``'folder'`` or ``'sa1b'``.
        with_boxes: add SA-1B annotation boxes (for the box-prompt evaluation).
        max_boxes: boxes kept per image with ``with_boxes``.
        indices: ``N`` keeps the first ``N`` images, a list keeps those positions (as mmengine's
            ``BaseDataset``, but applied before the cache check, so only the kept images need embeddings).
    """

    METAINFO = dict(task="sam_encoder_distillation")

    def __init__(self, data_root: str, img_size: int = 1024, cache_dir: str | None = None,
                 subdirs: Sequence[str] | None = None, ann_file: str = "", layout: str = "auto",
                 with_boxes: bool = False, max_boxes: int = 16, indices: int | Sequence[int] | None = None,
                 **kwargs):
        self.img_size = img_size
        self.subset = indices
        self.cache_dir = cache_dir
        self.subdirs = list(subdirs) if subdirs else None
        self.layout = layout
        self.with_boxes = with_boxes
        self.max_boxes = max_boxes
        self._cache: EmbeddingCache | None = None
        super().__init__(ann_file=ann_file, data_root=data_root, **kwargs)

    def load_data_list(self) -> list[dict]:
        images, self.layout = list_images(self.data_root, self.subdirs, self.ann_file or None, self.layout)
        root = Path(self.data_root).expanduser()
        if self.subset is not None:
            images = images[: self.subset] if isinstance(self.subset, int) else [images[i] for i in self.subset]
        data_list: list[dict[str, Any]] = [dict(img_path=str(p), key=p.relative_to(root).as_posix()) for p in images]
        if self.with_boxes and self.layout != "sa1b":
            raise ValueError("with_boxes=True needs SA-1B annotation files (sa_N.json next to sa_N.jpg); "
                             "for a plain folder let the evaluation take boxes from the teacher's masks")
        if self.cache_dir is not None:
            cache = self.cache
            missing = cache.missing(d["key"] for d in data_list)
            if missing:
                raise CacheError(
                    f"{len(missing)} of {len(data_list)} images have no teacher embedding in {self.cache_dir} "
                    f"(e.g. {missing[:3]}). Run python tools/precompute_sam_embeddings.py on the same data "
                    "first; it resumes where it stopped."
                )
            if cache.meta.get("img_size") != self.img_size:
                raise CacheError(f"{self.cache_dir} was computed at img_size {cache.meta.get('img_size')}, "
                                 f"this dataset uses {self.img_size}: use matching settings or another cache")
            for item in data_list:
                item["shard"], item["row"] = cache.location[item["key"]]
        return data_list

    @property
    def cache(self) -> EmbeddingCache:
        if self._cache is None:
            if self.cache_dir is None:
                raise CacheError("this dataset has no cache_dir")
            self._cache = EmbeddingCache(self.cache_dir)
        return self._cache

    def prepare_data(self, idx: int) -> dict:
        from ..io.images import load_image

        info = self.get_data_info(idx)
        image = load_image(info["img_path"])
        inputs, input_size = sam_preprocess(image, self.img_size)
        sample = BaseDataElement(metainfo=dict(key=info["key"], input_size=input_size,
                                               original_size=tuple(image.shape[:2]), index=idx))
        if self.with_boxes:
            from segment_anything.utils.transforms import ResizeLongestSide

            boxes = _sa1b_boxes(str(Path(info["img_path"]).with_suffix(".json")), self.max_boxes, seed=idx)
            boxes = ResizeLongestSide(self.img_size).apply_boxes(boxes, image.shape[:2])
            sample.boxes = torch.as_tensor(boxes, dtype=torch.float32)
        item = dict(inputs=inputs, data_samples=sample)
        if self.cache_dir is not None:
            item["teacher_embed"] = self.cache.get(info["key"], info["shard"], info["row"]).float()
        return item
