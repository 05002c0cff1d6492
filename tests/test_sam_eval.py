"""Zero-shot SAM evaluation on a synthetic COCO set: exact scores for exact masks, the clicks, the tool."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from repvit_plugins.exporters import mask_to_rle
from repvit_plugins.sam.evaluation import box_prompt_ap, load_coco, next_click, point_prompt_miou

from .conftest import run_tool


def _shapes(rng, height: int, width: int) -> list[np.ndarray]:
    import cv2

    box = np.zeros((height, width), np.uint8)
    x, y = int(rng.integers(5, width // 2 - 10)), int(rng.integers(5, height // 2 - 10))
    cv2.rectangle(box, (x, y), (x + 30, y + 20), 1, -1)
    blob = np.zeros((height, width), np.uint8)
    cv2.ellipse(blob, (int(width * 0.7), int(height * 0.65)), (18, 12), 0, 0, 360, 1, -1)
    return [box.astype(bool), blob.astype(bool)]


@pytest.fixture
def coco_set(tmp_path):
    """Three photos-like images with a rectangle and an ellipse each, as COCO with RLE masks."""
    from PIL import Image

    rng = np.random.default_rng(0)
    images, annotations, truth = [], [], {}
    for image_id in (1, 2, 3):
        height, width = 96, 128
        pixels = rng.integers(60, 120, (height, width, 3), dtype=np.uint8)
        masks = _shapes(rng, height, width)
        for mask, colour in zip(masks, ((230, 40, 40), (40, 40, 230))):
            pixels[mask] = colour
        Image.fromarray(pixels).save(tmp_path / f"{image_id}.png")
        images.append({"id": image_id, "file_name": f"{image_id}.png", "height": height, "width": width})
        for category, mask in enumerate(masks, 1):
            ys, xs = np.nonzero(mask)
            bbox = [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                                "bbox": bbox, "area": float(mask.sum()), "iscrowd": 0,
                                "segmentation": mask_to_rle(mask)})
            truth[(image_id, category)] = mask
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "box"}, {"id": 2, "name": "blob"}]}))
    return {"annotations": path, "images": tmp_path, "truth": truth}


class _Oracle:
    """Returns the ground-truth mask of the instance a box or first click falls on (eroded by ``shrink`` px)."""

    def __init__(self, truth: dict, images: Path, shrink: int = 0):
        from PIL import Image

        self.truth, self.shrink = truth, shrink
        self.by_pixels = {np.asarray(Image.open(images / f"{i}.png")).tobytes(): i for i in (1, 2, 3)}

    def set_image(self, image):
        self.image_id = self.by_pixels[np.ascontiguousarray(image).tobytes()]

    def _mask(self, x: float, y: float) -> np.ndarray:
        import cv2

        for (image_id, _), mask in self.truth.items():
            if image_id == self.image_id and mask[int(y), int(x)]:
                kernel = np.ones((2 * self.shrink + 1,) * 2, np.uint8)
                return cv2.erode(mask.astype(np.uint8), kernel).astype(bool) if self.shrink else mask
        raise AssertionError("prompt outside every object")

    def predict_boxes(self, boxes):
        masks = [self._mask((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for b in boxes]
        return np.stack(masks), np.ones(len(masks), np.float32)

    def predict_points(self, points, labels, mask_input=None, multimask_output=True):
        mask = self._mask(*points[0])
        return mask[None], np.ones(1, np.float32), np.zeros((1, 256, 256), np.float32)


def test_exact_masks_score_exactly_one(coco_set):
    oracle = _Oracle(coco_set["truth"], coco_set["images"])
    result = box_prompt_ap(oracle, coco_set["annotations"], coco_set["images"])
    assert result.masks == 6 and result.ap == pytest.approx(1.0)
    assert point_prompt_miou(oracle, coco_set["annotations"], coco_set["images"]) == {1: 1.0, 3: 1.0}


def test_worse_masks_score_lower(coco_set):
    oracle = _Oracle(coco_set["truth"], coco_set["images"], shrink=3)
    assert box_prompt_ap(oracle, coco_set["annotations"], coco_set["images"]).ap < 0.9
    assert point_prompt_miou(oracle, coco_set["annotations"], coco_set["images"], clicks=(1,))[1] < 0.8


def test_detector_boxes_are_used_when_given(coco_set):
    gt = load_coco(coco_set["annotations"])
    detections = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
                  for a in gt.loadAnns(gt.getAnnIds()) if a["category_id"] == 1]  # the detector finds only boxes
    result = box_prompt_ap(_Oracle(coco_set["truth"], coco_set["images"]), gt, coco_set["images"], detections)
    assert result.masks == 3 and 0.4 < result.ap < 0.6  # one category found perfectly, the other missed


def test_clicks_go_to_the_larger_error():
    target = np.zeros((40, 40), bool)
    target[10:30, 10:30] = True
    (x, y), label = next_click(target, None)
    assert label == 1 and (x, y) in ((19.0, 19.0), (20.0, 20.0))  # the centre of the square
    partial = target.copy()
    partial[:, 20:] = False  # the right half is missed
    (x, y), label = next_click(target, partial)
    assert label == 1 and x >= 20 and target[int(y), int(x)]
    extra = target.copy()
    extra[0:40, 32:40] = True  # a large false positive
    (x, y), label = next_click(target, extra)
    assert label == 0 and x >= 32


@pytest.mark.slow
def test_the_tool_evaluates_a_zoo_model(coco_set, tmp_path):
    from repvit_plugins.models import build_sam

    torch.save(build_sam("repvit_sam_m0_6", img_size=256).state_dict(), tmp_path / "student.pt")
    done = run_tool("eval_sam_coco.py", coco_set["annotations"], coco_set["images"], "--model", "repvit_sam_m0_6",
                    "--checkpoint", tmp_path / "student.pt", "--img-size", 256, "--points", 1, 3,
                    "--json", tmp_path / "eval.json", "--no-progress")
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / "eval.json").read_text())
    assert results["box_prompts"]["masks"] == 6 and 0.0 <= results["box_prompts"]["AP"] <= 1.0
    assert set(results["point_prompts_miou"]) == {"1", "3"}
    assert all(0.0 <= v <= 1.0 for v in results["point_prompts_miou"].values())
    assert "mask AP" in done.stdout and "click(s) mIoU" in done.stdout
    missing = run_tool("eval_sam_coco.py", coco_set["annotations"], coco_set["images"], "--model", "repvit_sam_m0_9")
    assert missing.returncode == 2 and "pass --checkpoint" in missing.stderr
