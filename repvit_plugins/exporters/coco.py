"""COCO instance-segmentation JSON with RLE masks (valid for pycocotools)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """Compressed COCO RLE of a boolean ``HxW`` mask, JSON-ready (``counts`` as str)."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """The boolean ``HxW`` mask of a COCO RLE (``counts`` as str, as :func:`mask_to_rle` writes it, or bytes)."""
    from pycocotools import mask as mask_utils

    counts = rle["counts"]
    return mask_utils.decode({**rle, "counts": counts.encode("ascii") if isinstance(counts, str) else counts}) > 0


def coco_annotations(detections, image_id: int, first_id: int = 1) -> list[dict[str, Any]]:
    """One COCO annotation per detection (``category_id`` = ``class_id + 1``); masks as RLE when present."""
    from pycocotools import mask as mask_utils

    annotations = []
    for i in range(len(detections)):
        x1, y1, x2, y2 = (float(v) for v in detections.xyxy[i])
        ann: dict[str, Any] = {
            "id": first_id + i,
            "image_id": image_id,
            "category_id": int(detections.class_id[i]) + 1,
            "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
            "score": round(float(detections.confidence[i]), 5) if detections.confidence is not None else 1.0,
            "iscrowd": 0,
        }
        if detections.mask is not None:
            rle = mask_to_rle(detections.mask[i])
            ann["segmentation"] = rle
            ann["area"] = int(mask_utils.area({**rle, "counts": rle["counts"].encode("ascii")}))
        else:
            ann["area"] = round((x2 - x1) * (y2 - y1), 2)
        annotations.append(ann)
    return annotations


def coco_dataset(images: Sequence[dict[str, Any]], annotations: Sequence[dict[str, Any]],
                 class_names: Sequence[str]) -> dict[str, Any]:
    """Assemble a COCO dict; annotation ids are renumbered 1..N in order."""
    renumbered = [{**ann, "id": i} for i, ann in enumerate(annotations, 1)]
    return {
        "info": {"description": "repvit_plugins grounded segmentation"},
        "images": list(images),
        "annotations": renumbered,
        "categories": [{"id": i, "name": name, "supercategory": "object"} for i, name in enumerate(class_names, 1)],
    }
