"""transformers' Grounding DINO in onnxruntime (a benchmark path): per-shape graphs, cache, agreement with torch."""
from __future__ import annotations

import pytest
import torch

from repvit_plugins.grounding import build_detector
from repvit_plugins.grounding.onnx_runtime import OnnxRuntimeGroundingDino

from ._grounding_fixtures import make_tiny_hf_grounding_dino
from ._sam_fixtures import synthetic_image
from .test_speed import _raw_outputs

# Float32 graphs equal torch to rounding (measured 1.5e-5 on the logits). The size keeps every feature map at
# least 2 pixels high and wide: at 64 x 96 the tiny model's last level is 1 x 2 and onnxruntime's GridSample
# differs from torch's grid_sample there (logits off by 0.8); real inputs (>= 800 px) never get there.
TINY_SIZE = {"image_size": 128, "max_size": 192}
FLOAT_LOGIT_ERROR = 1e-3
# int8 MatMuls (dynamic, per-tensor activations): median |logit diff| / std of the float32 logits; measured 0.026
INT8_MEDIAN_LOGIT_ERROR = 0.1


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    return make_tiny_hf_grounding_dino(tmp_path_factory.mktemp("onnx"))


def _detector(hf_dir, cache=None, **kwargs):
    detector = build_detector("hf", model=str(hf_dir), fast_attention=False, **TINY_SIZE)
    if cache is not None:
        detector.model = OnnxRuntimeGroundingDino(detector.model, cache, **kwargs)
    return detector


def test_onnxruntime_detector_equals_torch_per_shape(hf_dir, tmp_path):
    for height, width in ((120, 160), (160, 120)):  # two shapes: two graphs
        image = synthetic_image(height, width)
        logits, boxes, found = _raw_outputs(_detector(hf_dir), image)
        ort_logits, ort_boxes, ort_found = _raw_outputs(_detector(hf_dir, tmp_path), image)
        finite = torch.isfinite(logits)
        assert torch.equal(finite, torch.isfinite(ort_logits))
        assert (ort_logits - logits)[finite].abs().max() < FLOAT_LOGIT_ERROR
        assert (ort_boxes - boxes).abs().max() < 1e-4
        assert len(ort_found) == len(found)
    graphs = sorted(p.name for p in tmp_path.glob("grounding_dino_*/*.onnx"))
    assert graphs == ["b1_128x170_t8.onnx", "b1_170x128_t8.onnx"]


def test_cached_graphs_are_reused_and_keyed_by_weights(hf_dir, tmp_path):
    image = synthetic_image(120, 160)
    _raw_outputs(_detector(hf_dir, tmp_path), image)
    graph, = tmp_path.glob("grounding_dino_*/*.onnx")
    stamp = graph.stat().st_mtime_ns
    _raw_outputs(_detector(hf_dir, tmp_path), image)
    assert graph.stat().st_mtime_ns == stamp  # not traced again
    other = _detector(hf_dir)
    with torch.no_grad():
        next(other.model.parameters()).add_(1.0)
    assert OnnxRuntimeGroundingDino(other.model, tmp_path).folder != graph.parent


def test_int8_graph_agrees_with_float32(hf_dir, tmp_path):
    image = synthetic_image(120, 160)
    logits, _, _ = _raw_outputs(_detector(hf_dir), image)
    int8_logits, _, found = _raw_outputs(_detector(hf_dir, tmp_path, int8=True), image)
    finite = torch.isfinite(logits)
    error = (int8_logits - logits)[finite].abs().median() / logits[finite].std()
    assert 0 < error <= INT8_MEDIAN_LOGIT_ERROR
    assert len(found) > 0
    assert sorted(p.name for p in tmp_path.glob("grounding_dino_*/*.onnx")) == ["b1_128x170_t8.int8.onnx",
                                                                                  "b1_128x170_t8.onnx"]


def test_the_export_needs_the_float32_model_with_stock_attention(hf_dir, tmp_path):
    with pytest.raises(ValueError, match="fast_attention=False"):
        OnnxRuntimeGroundingDino(build_detector("hf", model=str(hf_dir)).model, tmp_path)
    bf16 = build_detector("hf", model=str(hf_dir), fast_attention=False, precision="bf16")
    with pytest.raises(ValueError, match="float32"):
        OnnxRuntimeGroundingDino(bf16.model, tmp_path)
