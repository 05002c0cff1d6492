"""Official RepViT mmdet 2.x / mmseg 0.x checkpoints -> what the mmdet 3.x / mmseg 1.x configs load.

The official ``repvit_m*_coco.pth`` / ``repvit_m*_ade20k.pth`` files were
written by mmcv 1.x runners. Their weights already use the key names of
mmdet 3.x Mask R-CNN / mmseg 1.x Semantic FPN (``backbone.features.N...``,
``neck.lateral_convs...``, ``rpn_head.rpn_conv...``, ``decode_head.scale_heads...``):
the backbone here keeps the official module names on purpose. What differs is
the metadata: 2.x kept ``CLASSES`` / ``PALETTE`` at the top of ``meta`` where
3.x looks for ``meta['dataset_meta']``, and the files carry a 2.x config text
and optimizer state nothing new can use. Conversion keeps only the weights
(checked against a config's model when one is given) and rewrites the metadata.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

from ..weights.checkpoint_io import extract_state_dict

__all__ = ["KEY_RENAMES", "convert_mm_checkpoint"]

# (pattern, replacement) applied to every key, in order. None are needed for the official RepViT
# Mask R-CNN / Semantic FPN files; add here if a future file uses other names.
KEY_RENAMES: list[tuple[str, str]] = []


def _dataset_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    if "dataset_meta" in meta:
        return {k.lower(): v for k, v in meta["dataset_meta"].items()}
    found: dict[str, Any] = {}
    if meta.get("CLASSES") is not None:
        found["classes"] = tuple(meta["CLASSES"])
    if meta.get("PALETTE") is not None:
        found["palette"] = [tuple(int(c) for c in colour) for colour in meta["PALETTE"]]
    return found


def convert_mm_checkpoint(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``{'meta': {...}, 'state_dict': {...}}`` in the mmengine layout.

    ``checkpoint`` is the loaded file (``{'meta', 'state_dict', 'optimizer'}``
    or a bare state dict). ``meta['dataset_meta']`` gets ``classes`` (and
    ``palette``); the versions it was trained with are kept under
    ``meta['converted_from']``; optimizer state and the 2.x config are dropped.
    """
    state = extract_state_dict(checkpoint)
    for pattern, replacement in KEY_RENAMES:
        state = {re.sub(pattern, replacement, k): v for k, v in state.items()}
    old_meta = (checkpoint.get("meta") if isinstance(checkpoint, Mapping) else None) or {}
    meta: dict[str, Any] = {}
    dataset_meta = _dataset_meta(old_meta)
    if dataset_meta:
        meta["dataset_meta"] = dataset_meta
    versions = {k: str(v) for k, v in old_meta.items() if k.endswith("_version")}
    if versions:
        meta["converted_from"] = versions
    return {"meta": meta, "state_dict": dict(state)}
