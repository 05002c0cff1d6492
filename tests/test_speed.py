"""Speed presets and the bf16 autocast paths: plans per CPU, options plumbing, agreement with float32."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from torchvision.ops import box_convert

from repvit_plugins.bench.numeric_agreement import boxes_matched, embedding_error, mean_mask_iou
from repvit_plugins.grounding import build_detector
from repvit_plugins.grounding.factory import detector_from_options
from repvit_plugins.jobs.settings import run_settings
from repvit_plugins.options import ModelOptions, PipelineOptions
from repvit_plugins.runtime import speed
from repvit_plugins.sam import SamSegmenter

from ._grounding_fixtures import LOW_THRESHOLDS, make_tiny_hf_grounding_dino
from ._sam_fixtures import small_sam, synthetic_image

# Tolerances of the bf16 paths against float32 on the same (tiny, random) weights. bf16 keeps 8 bits of
# mantissa (relative rounding 0.4 %); a random model's query selection may reorder near-ties, so boxes are
# compared as sets (the share of float32's top boxes found again at IoU >= 0.9).
DETECTOR_TOP_K = 10
DETECTOR_MIN_BOXES_MATCHED = 0.9     # measured 1.0
DETECTOR_MEDIAN_LOGIT_ERROR = 0.02   # x std of the float32 logits; measured 0.004
ENCODER_EMBEDDING_ERROR = 0.02       # mean |diff| / std; measured 0.006
ENCODER_MIN_MASK_IOU = 0.97          # measured 0.998


@pytest.fixture
def bf16_native(monkeypatch):
    """Pretend the CPU has (True) or lacks (False) native bf16."""
    def set_native(value: bool) -> None:
        monkeypatch.setattr(speed, "native_cpu_bf16", lambda: value)
    return set_native


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    return make_tiny_hf_grounding_dino(tmp_path_factory.mktemp("speed"))


def test_presets_follow_the_cpu(bf16_native):
    assert speed.speed_plan("exact") == speed.SpeedPlan("exact")
    bf16_native(True)
    assert speed.speed_plan("balanced").describe() == "balanced: detector bf16, encoder bf16"
    fast = speed.speed_plan("fast")
    assert (fast.detector_precision, fast.detector_image_size, fast.detector_max_size) == ("bf16", 512, 853)
    # only realtime trades the exact mask decoder for bf16
    assert [speed.speed_plan(p).decoder_precision for p in ("balanced", "fast", "realtime")] == ["fp32", "fp32", "bf16"]
    bf16_native(False)  # an AVX2-only CPU: emulated bf16 is slower than float32
    assert speed.speed_plan("realtime").decoder_precision == "fp32"
    assert speed.speed_plan("balanced").describe() == "balanced: detector fp32, encoder fp32"
    assert speed.speed_plan("fast").describe() == "fast: detector fp32 @512, encoder fp32"
    with pytest.raises(ValueError, match="speed must be one of"):
        speed.speed_plan("ludicrous")


def test_bf16_detection_can_be_forced(monkeypatch):
    speed.native_cpu_bf16.cache_clear()
    try:
        monkeypatch.setenv("REPVIT_PLUGINS_BF16", "0")
        assert speed.native_cpu_bf16() is False
        speed.native_cpu_bf16.cache_clear()
        monkeypatch.setenv("REPVIT_PLUGINS_BF16", "1")
        assert speed.native_cpu_bf16() is True
    finally:
        speed.native_cpu_bf16.cache_clear()
    assert "cores" in speed.cpu_description()


def test_autocast_names():
    assert torch.is_autocast_enabled("cpu") is False
    with speed.autocast("cpu", "bf16"):
        assert torch.is_autocast_enabled("cpu")
    with speed.autocast("cpu", "fp32"):
        assert not torch.is_autocast_enabled("cpu")
    with pytest.raises(ValueError, match="precision must be one of"):
        speed.autocast("cpu", "int4")


def test_speed_is_one_option_for_cli_and_run_settings(bf16_native):
    from repvit_plugins.commands.arguments import add_option_arguments, options_from_args

    bf16_native(True)
    parser = argparse.ArgumentParser()
    add_option_arguments(parser, ModelOptions)
    assert options_from_args(ModelOptions, parser.parse_args([])).speed == "balanced"
    models = options_from_args(ModelOptions, parser.parse_args(["--speed", "fast", "--device", "cpu"]))
    settings = run_settings("a cat.", models, PipelineOptions())
    assert settings["speed"] == "fast" and settings["speed_path"] == "fast: detector bf16 @512, encoder bf16"
    exact = run_settings("a cat.", models.replace(speed="exact"), PipelineOptions())
    assert exact != settings  # a resumed run refuses a mix of paths
    with pytest.raises(SystemExit):
        parser.parse_args(["--speed", "warp"])


def test_factory_applies_the_plan(hf_dir, bf16_native):
    bf16_native(True)
    detector = detector_from_options(ModelOptions(detector_model=str(hf_dir), device="cpu", speed="fast"))
    assert detector.precision == "bf16"
    assert detector._image_kwargs["size"] == {"shortest_edge": 512, "longest_edge": 853}
    exact = detector_from_options(ModelOptions(detector_model=str(hf_dir), device="cpu", speed="exact"))
    assert exact.precision == "fp32" and not exact._image_kwargs


def _raw_outputs(detector, image: np.ndarray):
    """The detector's raw (logits, boxes) for one image, and its Detections."""
    recorded = []
    forward = detector.forward
    detector.forward = lambda *args: recorded.append(forward(*args)) or recorded[-1]
    found = detector.detect(image, "a cat. a dog.", **LOW_THRESHOLDS)[0]
    logits, boxes = (t[0].float() for t in recorded[0])
    return logits, boxes, found


def _top_boxes(logits: torch.Tensor, boxes: torch.Tensor, k: int) -> torch.Tensor:
    finite = torch.where(torch.isfinite(logits), logits, torch.full_like(logits, -1e4))
    top = finite.max(dim=-1).values.topk(k).indices
    return box_convert(boxes[top], "cxcywh", "xyxy")


def test_bf16_detector_agrees_with_fp32(hf_dir):
    image = synthetic_image(120, 160)
    logits32, boxes32, found32 = _raw_outputs(build_detector("hf", model=str(hf_dir)), image)
    logits16, boxes16, found16 = _raw_outputs(build_detector("hf", model=str(hf_dir), precision="bf16"), image)
    assert len(found16) == len(found32)
    matched = boxes_matched(_top_boxes(logits16, boxes16, 3 * DETECTOR_TOP_K),
                            _top_boxes(logits32, boxes32, DETECTOR_TOP_K))
    assert matched >= DETECTOR_MIN_BOXES_MATCHED
    finite = torch.isfinite(logits32)
    error = (logits16 - logits32)[finite].abs().median() / logits32[finite].std()
    assert error <= DETECTOR_MEDIAN_LOGIT_ERROR


def test_bf16_encoder_agrees_with_fp32():
    image = synthetic_image(120, 160)
    boxes = np.array([[10, 10, 80, 90], [50, 30, 150, 110]], dtype=np.float32)
    results = {}
    for precision in ("fp32", "bf16"):
        segmenter = SamSegmenter(small_sam(), precision=precision)
        segmenter.set_image(image)
        results[precision] = segmenter.get_image_embedding(), segmenter.predict_boxes(boxes)[0]
    (emb32, masks32), (emb16, masks16) = results["fp32"], results["bf16"]
    assert emb16.dtype == torch.float32 and emb16.shape == emb32.shape
    assert embedding_error(emb16, emb32) <= ENCODER_EMBEDDING_ERROR
    assert mean_mask_iou(masks16, masks32) >= ENCODER_MIN_MASK_IOU


def test_agreement_measures():
    box = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    assert boxes_matched(box + 0.1, box) == 1.0 and boxes_matched(box + 5, box) == 0.0
    assert boxes_matched(torch.zeros(0, 4), box) == 0.0 and boxes_matched(box, torch.zeros(0, 4)) == 1.0
    mask = np.zeros((1, 4, 4), dtype=bool)
    mask[0, :2] = True
    assert mean_mask_iou(mask, mask) == 1.0 and mean_mask_iou(~mask, mask) == 0.0


def test_summary_records_the_speed_path(tmp_path):
    from repvit_plugins.jobs.labeler import BatchLabeler, Outputs, Summary

    path = "balanced: detector bf16, encoder bf16"
    labeler = BatchLabeler(None, tmp_path, "a cat.", ["a cat"], Outputs(), {"speed_path": path})
    labeler.finish([], Summary(images=0))
    assert json.loads((tmp_path / "summary.json").read_text())["speed_path"] == path
