"""The shared benchmark measures: closeness, mask IoU (its empty-mask convention), boxes, RSS, the child runner."""
import numpy as np
import pytest
import torch

from repvit_plugins.bench.boxes import random_boxes
from repvit_plugins.bench.child import run_child
from repvit_plugins.bench.memory import peak_rss_bytes
from repvit_plugins.bench.numeric_agreement import embedding_error, mask_iou, mean_mask_iou, relative_error


def test_embedding_and_relative_error_values():
    reference = torch.tensor([1.0, -1.0, 1.0, -1.0])
    ours = reference + torch.tensor([0.2, 0.0, 0.0, -0.2])
    assert embedding_error(ours, reference) == pytest.approx(0.1 / reference.std().item())
    assert relative_error(ours, reference) == pytest.approx(0.2)
    assert embedding_error(reference.numpy(), reference) == 0.0  # arrays work too
    assert relative_error(torch.ones(3), torch.zeros(3)) > 1e11  # a zero reference does not divide by zero


def test_mask_iou_convention_two_empty_masks_agree():
    ours = np.zeros((4, 3, 5), dtype=bool)
    reference = ours.copy()
    ours[0, 0, :4], reference[0, 0, :2] = True, True  # IoU 2 / 4
    ours[2, 1, 1] = True  # one empty, one not: 0
    ours[3], reference[3] = True, True  # identical: 1
    torch.testing.assert_close(mask_iou(ours, reference), torch.tensor([0.5, 1.0, 0.0, 1.0]))  # pair 1: both empty
    assert mean_mask_iou(ours, reference) == pytest.approx(0.625)
    assert mean_mask_iou(ours[:0], reference[:0]) == 1.0  # no pairs


def test_random_boxes_inside_the_image_and_seeded():
    boxes = random_boxes((100, 60), 32, torch.Generator().manual_seed(0))
    assert boxes.shape == (32, 4)
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= torch.tensor([60.0, 100.0]) + 1e-4).all()
    torch.testing.assert_close(boxes, random_boxes((100, 60), 32, torch.Generator().manual_seed(0)))


def test_peak_rss_is_a_plausible_byte_count():
    before = peak_rss_bytes()
    block = np.ones(64 * 2 ** 20, dtype=np.uint8)  # 64 MiB touched
    assert block.sum() == 64 * 2 ** 20
    assert 2 ** 20 < before <= peak_rss_bytes() and peak_rss_bytes() >= 64 * 2 ** 20


def test_child_failure_is_a_value(tmp_path):
    script = tmp_path / "child.py"
    script.write_text("import sys\nfrom repvit_plugins.bench.child import emit\n"
                      "if sys.argv[1] == 'ok':\n    emit({'value': 3})\nelse:\n    raise SystemExit('broken path')\n")
    assert run_child(script, ["ok"]) == {"value": 3}
    failed = run_child(script, ["fail"])
    assert set(failed) == {"failed"} and failed["failed"].startswith("exit 1") and "broken path" in failed["failed"]
