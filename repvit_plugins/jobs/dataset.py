"""A training dataset out of a labelling run: filters, renaming, a seeded split, COCO ``train.json`` / ``val.json``.

The records of :class:`~repvit_plugins.jobs.labeler.BatchLabeler` keep the
teacher's raw labels; everything here is applied when the dataset is written,
so other filters or names only need a new assembly (``--merge-only``), not a
new labelling run. Image ids are positions in the sorted image list and the
split is decided per image from a hash of the seed and the image's path below
the images' common folder, so both are the same on every rerun, resume or
number of ranks, and when the photos move. Image file names are relative to
the images' common folder (:attr:`DatasetSummary.images_root`), so the dataset
stays valid when the photos move; the same labels are also written as
semantic-segmentation label maps (:mod:`repvit_plugins.jobs.semantic`).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..exporters import coco_dataset
from ..grounding.prompts import strip_article
from ..io.atomic import atomic_write_text
from .semantic import write_label_maps

__all__ = ["DatasetOptions", "DatasetSummary", "category_names", "image_names", "parse_renames", "split_of",
           "write_dataset"]

SPLITS = ("train", "val")
@dataclass(frozen=True)
class DatasetOptions:
    """Which teacher labels become training labels, under which names, and how images are split."""

    val_fraction: float = 0.2
    seed: int = 0
    min_score: float = 0.0
    min_mask_area: int = 0
    max_instances: int | None = None
    rename: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1); got {self.val_fraction}")
        if self.min_mask_area < 0 or (self.max_instances is not None and self.max_instances < 1):
            raise ValueError("min_mask_area must be >= 0 and max_instances >= 1")


def parse_renames(pairs: Iterable[str]) -> dict[str, str]:
    """``["a puppy=dog", ...]`` -> ``{"a puppy": "dog"}`` (``--rename`` flags)."""
    renames = {}
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise ValueError(f"--rename takes PROMPT_CLASS=NAME, e.g. 'a puppy=dog'; got {pair!r}")
        renames[old.strip().lower()] = new.strip()
    return renames


def category_names(class_names: Sequence[str], rename: dict[str, str]) -> tuple[list[str], list[int]]:
    """The dataset's categories and, per prompt class, its category index.

    A class is renamed as ``rename`` says (case-insensitive), else loses a leading article
    (``"a dog"`` -> ``"dog"``); classes with the same new name merge into one category.
    """
    unknown = sorted(set(rename) - {name.lower() for name in class_names})
    if unknown:
        raise ValueError(f"--rename names {', '.join(map(repr, unknown))}, not a class of the prompt "
                         f"({', '.join(class_names)})")
    categories: list[str] = []
    index = []
    for name in class_names:
        new = rename.get(name.lower(), strip_article(name))
        if new not in categories:
            categories.append(new)
        index.append(categories.index(new))
    return categories, index


def split_of(key: str, seed: int, val_fraction: float) -> str:
    """``'val'`` for a ``val_fraction`` of image keys, the same on every run with this ``seed``."""
    return "val" if _unit_hash(key, seed) < val_fraction else "train"


def _unit_hash(key: str, seed: int) -> float:
    digest = hashlib.sha1(f"{seed}:{key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64


@dataclass
class DatasetSummary:
    """What the dataset holds, per split and per category, what the filters dropped, and where the images are."""

    images: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    labels: dict[str, dict[str, int]] = field(default_factory=dict)  # category -> split -> count
    dropped: dict[str, int] = field(default_factory=lambda: {"score": 0, "mask_area": 0, "max_instances": 0})
    images_root: str = ""  # the images' common folder: the file names in train.json / val.json start there

    def render(self) -> str:
        lines = [f"dataset: {self.images['train']} train / {self.images['val']} val images; "
                 f"dropped {self.dropped['score']} labels by score, {self.dropped['mask_area']} by mask area, "
                 f"{self.dropped['max_instances']} by the per-image maximum"]
        width = max([len(name) for name in self.labels] + [5])
        lines.append(f"  {'class':<{width}}  {'train':>6}  {'val':>6}")
        lines += [f"  {name:<{width}}  {n['train']:>6}  {n['val']:>6}" for name, n in self.labels.items()]
        return "\n".join(lines)


def _keep(annotations: list[dict[str, Any]], options: DatasetOptions, dropped: dict[str, int]) -> list[dict]:
    """The annotations that pass the filters, best score first."""
    kept: list[dict[str, Any]] = []
    for ann in sorted(annotations, key=lambda a: -a.get("score", 1.0)):
        if ann.get("score", 1.0) < options.min_score:
            dropped["score"] += 1
        elif ann.get("area", 0) < max(options.min_mask_area, 1):  # an empty mask is never a label
            dropped["mask_area"] += 1
        elif options.max_instances is not None and len(kept) >= options.max_instances:
            dropped["max_instances"] += 1
        else:
            kept.append(ann)
    return kept


def image_names(paths: Sequence[str | Path]) -> tuple[Path | None, list[str]]:
    """The images' common folder and each image's POSIX path below it (``None, []`` for no images).

    The names are the dataset's ``file_name`` and what decides an image's split: the same wherever the folder is.
    """
    resolved = [Path(p).resolve() for p in paths]
    if not resolved:
        return None, []
    root = resolved[0].parent if len(resolved) == 1 else Path(os.path.commonpath(resolved))
    return root, [p.relative_to(root).as_posix() for p in resolved]


def _splits(keys: list[str], options: DatasetOptions) -> list[str]:
    """Each image's split; with two images or more, each split gets at least one (if ``val_fraction`` > 0)."""
    splits = [split_of(key, options.seed, options.val_fraction) for key in keys]
    if len(keys) >= 2 and options.val_fraction > 0:
        ranked = sorted(range(len(keys)), key=lambda i: _unit_hash(keys[i], options.seed))
        if "val" not in splits:
            splits[ranked[0]] = "val"
        if "train" not in splits:
            splits[ranked[-1]] = "train"
    return splits


def write_dataset(records: Iterable[tuple[int, Path, dict[str, Any]]], class_names: Sequence[str],
                  out_dir: str | Path, options: DatasetOptions) -> DatasetSummary:
    """Write ``train.json``, ``val.json`` (COCO instances, RLE masks), their label maps and ``labels.json``.

    Args:
        records: ``(image id, path, record)`` from :meth:`BatchLabeler.records` (labelled with COCO outputs).
        class_names: the prompt's classes (what the records' ``category_id`` - 1 index).
        out_dir: the dataset folder.
        options: filters, renaming and split.
    """
    out = Path(out_dir)
    categories, index = category_names(class_names, options.rename)
    records = list(records)
    root, names = image_names([path for _, path, _ in records])
    summary = DatasetSummary(labels={name: dict.fromkeys(SPLITS, 0) for name in categories},
                             images_root=str(root or out.resolve()))
    parts: dict[str, tuple[list, list]] = {split: ([], []) for split in SPLITS}
    for (image_id, _, record), name, split in zip(records, names, _splits(names, options)):
        images, annotations = parts[split]
        images.append({"id": image_id, "file_name": name, "height": record["height"], "width": record["width"]})
        for ann in _keep(record["annotations"], options, summary.dropped):
            category = index[ann["category_id"] - 1]
            annotations.append({**ann, "image_id": image_id, "category_id": category + 1})
            summary.labels[categories[category]][split] += 1
        summary.images[split] += 1
    first_id = 1
    for split, (images, annotations) in parts.items():
        dataset = coco_dataset(images, annotations, categories)
        for ann in dataset["annotations"]:  # ids unique across both files
            ann["id"] += first_id - 1
        first_id += len(annotations)
        dataset["info"] = {"description": f"repvit_plugins autolabel, {split} split", "options": asdict(options)}
        atomic_write_text(out / f"{split}.json", json.dumps(dataset))
    write_label_maps(out, parts, len(categories))
    atomic_write_text(out / "labels.json", json.dumps(asdict(summary), indent=2))
    return summary
