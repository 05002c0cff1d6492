"""The gather-based multi-scale deformable attention against transformers' own, and the detectors around it
(Grounding DINO and MM-Grounding-DINO, each with its own copy of transformers' attention)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers.models.grounding_dino.modeling_grounding_dino import MultiScaleDeformableAttention
from transformers.models.mm_grounding_dino import modeling_mm_grounding_dino

from repvit_plugins.grounding import build_detector
from repvit_plugins.grounding.deformable_attention import (
    multi_scale_deformable_attention,
)
from repvit_plugins.grounding.fusion_attention import FoldedBiMultiHeadAttention, FoldedMMBiMultiHeadAttention
from repvit_plugins.runtime.speed import autocast

from ._grounding_fixtures import make_tiny_hf_grounding_dino, make_tiny_hf_mm_grounding_dino

# float32 sums in another order: differences are rounding only (measured 3e-7 on these inputs, 1.5e-5 relative
# on the full-size encoder's 20k queries x 4 levels x 4 points).
TOLERANCE = 1e-5


def _inputs(shapes, batch=2, heads=3, dim=4, points=3, queries=17, seed=0, spread=(-0.3, 1.3)):
    generator = torch.Generator().manual_seed(seed)
    area = sum(h * w for h, w in shapes)
    value = torch.randn(batch, area, heads, dim, generator=generator)
    low, high = spread
    locations = torch.rand(batch, queries, heads, len(shapes), points, 2, generator=generator) * (high - low) + low
    weights = torch.rand(batch, queries, heads, len(shapes), points, generator=generator)
    return value, locations, weights


REFERENCES = [MultiScaleDeformableAttention, modeling_mm_grounding_dino.MultiScaleDeformableAttention]


def _reference(value, shapes, locations, weights, kind=MultiScaleDeformableAttention):
    spatial = torch.tensor(shapes)
    starts = torch.cat([spatial.new_zeros(1), spatial.prod(1).cumsum(0)[:-1]])
    return kind()(value, spatial, list(shapes), starts, locations, weights, 64)


@pytest.mark.parametrize("kind", REFERENCES, ids=["grounding-dino", "mm-grounding-dino"])
@pytest.mark.parametrize("shapes", [[(5, 7), (3, 4)], [(1, 1)], [(9, 2), (4, 6), (2, 3), (1, 1)]])
def test_equals_transformers_inside_and_outside_the_maps(shapes, kind):
    value, locations, weights = _inputs(shapes)  # a quarter of the points fall outside (zero padding)
    expected = _reference(value, shapes, locations, weights, kind)
    got = multi_scale_deformable_attention(value, shapes, locations, weights)
    assert got.shape == expected.shape and got.dtype == value.dtype
    assert torch.allclose(got, expected, atol=TOLERANCE, rtol=0)
    assert expected.abs().max() > 0.5  # the comparison is not between near-zeros


def test_points_on_the_borders_and_far_away():
    shapes = [(4, 6)]
    value, _, weights = _inputs(shapes, queries=6)
    edges = torch.tensor([0.0, 1.0, -5.0, 7.0, 0.5 / 6, 1 - 0.5 / 6])  # corners, far outside, pixel centres
    locations = torch.stack(torch.meshgrid(edges, edges, indexing="ij"), -1).reshape(-1, 2)[:, None, None, None]
    locations = locations.expand(-1, 3, 1, 3, 2).reshape(1, 36, 3, 1, 3, 2).expand(2, -1, -1, -1, -1, -1)
    weights = torch.ones(2, 36, 3, 1, 3)
    expected = _reference(value, shapes, locations.contiguous(), weights)
    got = multi_scale_deformable_attention(value, shapes, locations, weights)
    assert torch.allclose(got, expected, atol=TOLERANCE, rtol=0)
    far = (locations[0, :, 0, 0, 0] < -1).any(-1) | (locations[0, :, 0, 0, 0] > 2).any(-1)
    assert far.any() and got[:, far].abs().max() == 0


def test_bf16_values_come_back_in_bf16():
    shapes = [(5, 7), (3, 4)]
    value, locations, weights = _inputs(shapes)
    got = multi_scale_deformable_attention(value.bfloat16(), shapes, locations, weights)
    expected = _reference(value.bfloat16().float(), shapes, locations, weights)
    assert got.dtype == torch.bfloat16
    assert torch.allclose(got.float(), expected, atol=0.02, rtol=0.01)  # bf16 rounding of the output


FOLDED = (FoldedBiMultiHeadAttention, FoldedMMBiMultiHeadAttention)


@pytest.fixture(scope="module", params=["grounding-dino", "mm-grounding-dino"])
def hf_dir(request, tmp_path_factory):
    make = make_tiny_hf_grounding_dino if request.param == "grounding-dino" else make_tiny_hf_mm_grounding_dino
    return make(tmp_path_factory.mktemp("msda"))


def _forward(detector, image, precision="fp32"):
    chunk = detector.prompt_chunks(["a cat", "a dog"])[0]
    with torch.no_grad(), autocast("cpu", precision):
        logits, boxes = detector.forward(image if isinstance(image, list) else [image], chunk)
    return logits.float(), boxes.float()


def test_the_detector_swaps_every_attention_and_keeps_its_outputs(hf_dir):
    image = np.random.default_rng(0).integers(0, 255, (90, 130, 3), dtype=np.uint8)
    stock = build_detector("hf", model=str(hf_dir), fast_attention=False)
    fast = build_detector("hf", model=str(hf_dir))  # the default on the CPU
    names = [type(m).__name__ for m in fast.model.modules()]
    assert "FastMultiScaleDeformableAttention" in names and "MultiScaleDeformableAttention" not in names
    assert any(isinstance(m, FOLDED) for m in fast.model.modules())
    stock_names = [type(m).__name__ for m in stock.model.modules()]
    assert "MultiScaleDeformableAttention" in stock_names
    assert not any(isinstance(m, FOLDED) for m in stock.model.modules())
    (logits, boxes), (ref_logits, ref_boxes) = _forward(fast, image), _forward(stock, image)
    finite = torch.isfinite(ref_logits)
    assert torch.equal(torch.isfinite(logits), finite)
    assert torch.allclose(logits[finite], ref_logits[finite], atol=1e-4, rtol=0)
    assert torch.allclose(boxes, ref_boxes, atol=1e-5, rtol=0)


def test_a_padded_batch_keeps_its_outputs(hf_dir):
    """Two sizes in one batch: the smaller image is padded, which both attentions must mask."""
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 255, (90, 130, 3), dtype=np.uint8), rng.integers(0, 255, (70, 60, 3), dtype=np.uint8)]
    stock = build_detector("hf", model=str(hf_dir), fast_attention=False)
    fast = build_detector("hf", model=str(hf_dir))
    (logits, boxes), (ref_logits, ref_boxes) = _forward(fast, images), _forward(stock, images)
    finite = torch.isfinite(ref_logits)
    assert logits.shape[0] == 2 and torch.equal(torch.isfinite(logits), finite)
    assert torch.allclose(logits[finite], ref_logits[finite], atol=1e-4, rtol=0)
    assert torch.allclose(boxes, ref_boxes, atol=1e-5, rtol=0)


def test_bf16_weights_cast_once_give_the_autocast_outputs(hf_dir):
    image = np.random.default_rng(1).integers(0, 255, (80, 100, 3), dtype=np.uint8)
    detector = build_detector("hf", model=str(hf_dir), precision="bf16")
    linears = [m for m in detector.model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(m.weight.dtype == torch.bfloat16 for m in linears)
    plain = build_detector("hf", model=str(hf_dir))  # float32 weights, autocast casts them per call
    assert all(torch.equal(a, b) for a, b in zip(_forward(detector, image, "bf16"), _forward(plain, image, "bf16")))


def _maps_of(folder) -> list[str]:
    return [line for line in open("/proc/self/maps") if str(folder) in line]


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads Linux's /proc/self/maps")
def test_bf16_detector_lets_go_of_the_float32_file(hf_dir):
    """Once the weights are cast, model.safetensors is unmapped (0.57 GB of resident pages at full size); the
    float32 detector keeps its weights in the map (they are its weights) and gives the same bf16 outputs."""
    image = np.random.default_rng(2).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    detector = build_detector("hf", model=str(hf_dir), precision="bf16")
    assert not _maps_of(hf_dir), _maps_of(hf_dir)
    plain = build_detector("hf", model=str(hf_dir))
    assert _maps_of(hf_dir)
    assert all(torch.equal(a, b) for a, b in zip(_forward(detector, image, "bf16"), _forward(plain, image, "bf16")))
