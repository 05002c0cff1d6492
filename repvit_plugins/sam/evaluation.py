"""Zero-shot evaluation of a SAM on a COCO-format set: box-prompt mask AP and point-prompt mIoU.

*Box prompts* (RepViT-SAM's / MobileSAM's protocol): every image is embedded once,
its boxes — the ground truth's, or a detector's from a COCO results file — are
decoded in one call, and the masks are scored by pycocotools' ``segm`` COCOeval.

*Point prompts* (EdgeSAM's protocol): for every ground-truth instance, the first
click is the interior point farthest from the object's boundary; each next click
goes to the point farthest from the boundary of the larger error region (a
positive click in a missed region, a negative one in a false positive), with the
previous low-resolution logits as mask input. The mean IoU after 1, 3, … clicks is
reported.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..bench.numeric_agreement import mask_iou

__all__ = ["BoxPromptResult", "box_prompt_ap", "load_coco", "next_click", "point_prompt_miou"]


@dataclass
class BoxPromptResult:
    """``segm`` COCOeval summary (AP, AP50, AP75, APs, APm, APl, ...) and the number of masks scored."""

    stats: list[float]
    masks: int

    @property
    def ap(self) -> float:
        return self.stats[0]


def load_coco(coco_or_path):
    """A ``pycocotools`` ``COCO`` from an annotations file (quietly), or the one given."""
    from pycocotools.coco import COCO

    from ..runtime.quiet import quietly

    if not isinstance(coco_or_path, (str, Path)):
        return coco_or_path
    with quietly():
        return COCO(str(coco_or_path))


def _xyxy(bbox: Sequence[float]) -> list[float]:
    x, y, w, h = bbox
    return [x, y, x + w, y + h]


def _prompts(gt, image_id: int, detections: list[dict] | None) -> list[dict]:
    if detections is None:
        anns = gt.loadAnns(gt.getAnnIds(imgIds=[image_id], iscrowd=False))
        return [{"bbox": a["bbox"], "category_id": a["category_id"], "score": 1.0} for a in anns]
    return [d for d in detections if d["image_id"] == image_id]


def box_prompt_ap(segmenter, coco_gt, images_dir: str | Path, detections: str | Path | list[dict] | None = None,
                  *, image_ids: Sequence[int] | None = None, load: Callable[[Path], np.ndarray] | None = None,
                  progress: bool = False) -> BoxPromptResult:
    """Mask AP of ``segmenter`` prompted with boxes on the COCO set ``coco_gt`` (annotations JSON or ``COCO``).

    Args:
        segmenter: anything with ``set_image(rgb)`` and ``predict_boxes(xyxy) -> (masks, scores)``, e.g.
            :class:`~repvit_plugins.sam.SamSegmenter`.
        images_dir: folder of the images (``file_name`` relative to it).
        detections: a COCO results file (or list) of a detector's boxes; ``None`` prompts with the ground truth.
        image_ids: evaluate only these images.
        load: image reader (default :func:`repvit_plugins.io.load_image`).
    """
    from pycocotools.cocoeval import COCOeval
    from tqdm.auto import tqdm

    from ..exporters import mask_to_rle
    from ..io import load_image
    from ..runtime.quiet import quietly

    gt = load_coco(coco_gt)
    detection_list: list[dict] | None = (json.loads(Path(detections).read_text()) if isinstance(detections, (str, Path))
                                         else detections)
    ids = list(image_ids) if image_ids is not None else sorted(gt.getImgIds())
    load = load or load_image
    results: list[dict[str, Any]] = []
    for image_id in tqdm(ids, desc="box prompts", unit="img", disable=not progress):
        prompts = _prompts(gt, image_id, detection_list)
        if not prompts:
            continue
        info = gt.loadImgs([image_id])[0]
        segmenter.set_image(load(Path(images_dir) / info["file_name"]))
        masks, _ = segmenter.predict_boxes(np.array([_xyxy(p["bbox"]) for p in prompts], dtype=np.float32))
        results += [{"image_id": image_id, "category_id": p["category_id"], "segmentation": mask_to_rle(m),
                     "score": float(p.get("score", 1.0))} for p, m in zip(prompts, masks)]
    if not results:
        raise ValueError("no box prompts: the ground truth has no annotations (or the detections no boxes) "
                         "for the images evaluated")
    with quietly():
        evaluator = COCOeval(gt, gt.loadRes(results), "segm")
        evaluator.params.imgIds = ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return BoxPromptResult([float(s) for s in evaluator.stats], len(results))


def _deepest_point(region: np.ndarray) -> tuple[float, float]:
    """``(x, y)`` of the pixel of ``region`` farthest from its boundary."""
    import cv2

    padded = np.pad(region.astype(np.uint8), 1)
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return float(x), float(y)


def next_click(gt_mask: np.ndarray, predicted: np.ndarray | None) -> tuple[tuple[float, float], int]:
    """The next click and its label (1 positive, 0 negative) for ``gt_mask`` given the current ``predicted``."""
    if predicted is None:
        return _deepest_point(gt_mask), 1
    missed, extra = gt_mask & ~predicted, predicted & ~gt_mask
    if missed.sum() >= extra.sum():
        return _deepest_point(missed), 1
    return _deepest_point(extra), 0


def point_prompt_miou(segmenter, coco_gt, images_dir: str | Path, clicks: Sequence[int] = (1, 3), *,
                      image_ids: Sequence[int] | None = None, load: Callable[[Path], np.ndarray] | None = None,
                      progress: bool = False) -> dict[int, float]:
    """Mean IoU over the ground-truth instances after each number of ``clicks`` (EdgeSAM's protocol)."""
    from tqdm.auto import tqdm

    from ..io import load_image

    gt = load_coco(coco_gt)
    ids = list(image_ids) if image_ids is not None else sorted(gt.getImgIds())
    load = load or load_image
    most = max(clicks)
    ious: dict[int, list[float]] = {k: [] for k in clicks}
    for image_id in tqdm(ids, desc="point prompts", unit="img", disable=not progress):
        anns = [a for a in gt.loadAnns(gt.getAnnIds(imgIds=[image_id], iscrowd=False)) if a.get("area", 1) > 0]
        if not anns:
            continue
        segmenter.set_image(load(Path(images_dir) / gt.loadImgs([image_id])[0]["file_name"]))
        for ann in anns:
            target = gt.annToMask(ann).astype(bool)
            points: list[tuple[float, float]] = []
            labels: list[int] = []
            predicted, logits = None, None
            for k in range(1, most + 1):
                point, label = next_click(target, predicted)
                points.append(point)
                labels.append(label)
                masks, scores, low_res = segmenter.predict_points(
                    np.array(points, dtype=np.float32), np.array(labels), mask_input=logits,
                    multimask_output=k == 1)
                best = int(np.argmax(scores))
                predicted, logits = masks[best], low_res[best][None]
                if k in ious:
                    ious[k].append(float(mask_iou(predicted[None], target[None])[0]))
    if not ious[most]:
        raise ValueError("no ground-truth instances in the images evaluated")
    return {k: float(np.mean(v)) for k, v in ious.items()}
