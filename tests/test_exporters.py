"""COCO RLE JSON, PNG masks, YOLO-seg labels and atomic writes, checked with pycocotools / OpenCV / PIL."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import supervision as sv
from PIL import Image

from repvit_plugins.exporters import (
    coco_annotations,
    coco_dataset,
    mask_to_rle,
    write_png_masks,
    yolo_seg_lines,
)
from repvit_plugins.io.atomic import atomic_write_text

H, W = 60, 80


def _detections() -> sv.Detections:
    masks = np.zeros((3, H, W), dtype=bool)
    masks[0, 10:30, 5:40] = True
    cv2.circle(masks[1].view(np.uint8), (55, 35), 15, 1, -1)
    masks[2, 40:58, 10:20] = True
    masks[2, 45:50, 12:15] = False  # a hole
    return sv.Detections(xyxy=sv.mask_to_xyxy(masks).astype(np.float32), mask=masks,
                         confidence=np.array([0.9, 0.8, 0.7], dtype=np.float32), class_id=np.array([0, 1, 0]),
                         data={"class_name": np.array(["cat", "dog", "cat"])})


def test_rle_round_trip():
    from pycocotools import mask as mask_utils

    for mask in _detections().mask:
        rle = mask_to_rle(mask)
        assert isinstance(rle["counts"], str)
        decoded = mask_utils.decode({**rle, "counts": rle["counts"].encode()})
        assert np.array_equal(decoded.astype(bool), mask)


def test_coco_json_loads_and_evaluates_perfectly(tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    detections = _detections()
    annotations = coco_annotations(detections, image_id=1)
    dataset = coco_dataset([{"id": 1, "file_name": "x.jpg", "height": H, "width": W}], annotations, ["cat", "dog"])
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(dataset))
    gt = COCO(str(path))
    assert [c["name"] for c in gt.loadCats(gt.getCatIds())] == ["cat", "dog"]
    for ann, mask in zip(gt.loadAnns(gt.getAnnIds()), detections.mask):
        assert np.array_equal(gt.annToMask(ann).astype(bool), mask)
        assert ann["area"] == mask.sum()
    results = gt.loadRes([{k: a[k] for k in ("image_id", "category_id", "segmentation", "score")} for a in annotations])
    evaluator = COCOeval(gt, results, "segm")
    evaluator.evaluate(), evaluator.accumulate(), evaluator.summarize()
    assert evaluator.stats[0] == pytest.approx(1.0)


def test_yolo_lines_parse_and_match_masks():
    detections = _detections()
    lines = yolo_seg_lines(detections, H, W)
    assert len(lines) == 3
    for line, mask, class_id in zip(lines, detections.mask, detections.class_id):
        values = line.split()
        assert int(values[0]) == class_id
        coords = np.array(values[1:], dtype=float).reshape(-1, 2)
        assert ((coords >= 0) & (coords <= 1)).all() and len(coords) >= 3
        drawn = np.zeros((H, W), np.uint8)
        cv2.fillPoly(drawn, [np.round(coords * [W, H]).astype(np.int32)], 1)
        outer = drawn.astype(bool)
        iou = (outer & mask).sum() / (outer | mask).sum()
        assert iou > 0.85


def test_png_masks_round_trip(tmp_path):
    detections = _detections()
    paths = write_png_masks(detections, tmp_path / "masks")
    assert [p.name for p in paths] == ["000_cat.png", "001_dog.png", "002_cat.png"]
    for path, mask in zip(paths, detections.mask):
        assert np.array_equal(np.asarray(Image.open(path)) > 127, mask)


def test_atomic_write_leaves_no_temporaries(tmp_path):
    target = tmp_path / "deep" / "file.json"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["file.json"]
