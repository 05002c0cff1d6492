"""SamSegmenter and its predictor: parity with segment_anything, batching, caching, prompt errors."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from segment_anything import SamAutomaticMaskGenerator, SamPredictor

from repvit_plugins.sam import PromptError, SamSegmenter

from ._sam_fixtures import plain_sam_twin, small_sam, synthetic_image

BOXES = np.array([[20, 30, 150, 180], [100, 40, 290, 190], [5, 5, 60, 50], [150, 100, 280, 195]], dtype=np.float32)
POINTS = (np.array([[60, 70], [200, 120], [250, 60]], dtype=np.float32), np.array([1, 1, 0]))


@pytest.fixture(scope="module")
def sam():
    return small_sam()


@pytest.fixture(scope="module")
def reference(sam):
    """segment_anything's own predictor on a Sam assembled from its classes with the same weights."""
    predictor = SamPredictor(plain_sam_twin(sam))
    predictor.set_image(synthetic_image())
    return predictor


def _segmenter(sam, **kwargs) -> SamSegmenter:
    segmenter = SamSegmenter(copy.deepcopy(sam), **kwargs)
    segmenter.set_image(synthetic_image())
    return segmenter


def _agree(ours: np.ndarray, theirs: np.ndarray) -> float:
    return float((ours == theirs).mean())


def test_exact_parity_with_segment_anything_unfused(sam, reference):
    segmenter = _segmenter(sam, fuse=False, channels_last=False, decoder="sam")
    assert torch.equal(segmenter.get_image_embedding(), reference.get_image_embedding())
    masks, scores = segmenter.predict_boxes(BOXES)
    for i, box in enumerate(BOXES):
        ref_masks, ref_scores, _ = reference.predict(box=box, multimask_output=False)
        assert np.array_equal(masks[i], ref_masks[0]) and scores[i] == pytest.approx(ref_scores[0], abs=1e-6)
    ours = segmenter.predict_points(*POINTS)
    theirs = reference.predict(*POINTS, multimask_output=True)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("decoder", ["fast", "sam"])
def test_fused_channels_last_fast_decoder_matches_segment_anything(sam, reference, decoder):
    segmenter = _segmenter(sam, decoder=decoder)  # fused + channels_last by default
    embedding, ref_embedding = segmenter.get_image_embedding(), reference.get_image_embedding()
    assert embedding.is_contiguous()
    assert (embedding - ref_embedding).abs().mean() <= 1e-3 * ref_embedding.std()
    masks, scores = segmenter.predict_boxes(BOXES)
    ref = [reference.predict(box=box, multimask_output=False) for box in BOXES]
    assert _agree(masks, np.stack([r[0][0] for r in ref])) > 0.999
    np.testing.assert_allclose(scores, [r[1][0] for r in ref], atol=2e-3)
    masks, scores, logits = segmenter.predict_points(*POINTS, box=BOXES[1])
    ref_masks, ref_scores, ref_logits = reference.predict(*POINTS, box=BOXES[1])
    assert _agree(masks, ref_masks) > 0.999
    np.testing.assert_allclose(scores, ref_scores, atol=2e-3)
    assert np.abs(logits - ref_logits).max() <= 2e-3 * np.abs(ref_logits).max()


@pytest.mark.parametrize("multimask", [False, True])
def test_batched_boxes_equal_one_at_a_time(sam, multimask):
    segmenter = _segmenter(sam, chunk_size=3)  # 4 boxes: a full and a partial chunk
    masks, scores = segmenter.predict_boxes(BOXES, multimask_output=multimask)
    assert masks.shape == (4, 200, 300) and masks.dtype == bool and scores.shape == (4,)
    for i, box in enumerate(BOXES):
        single, single_score = segmenter.predict_boxes(box[None], multimask_output=multimask)
        assert _agree(single[0], masks[i]) > 0.9999
        assert single_score[0] == pytest.approx(scores[i], abs=1e-5)
    if multimask:  # the kept mask is the best of the three SAM proposes
        _, all_scores, _ = segmenter.predictor.predict(box=BOXES[0], multimask_output=True)
        assert scores[0] == pytest.approx(all_scores.max(), abs=1e-5)


def test_no_boxes_give_empty_arrays(sam):
    segmenter = _segmenter(sam)
    masks, scores = segmenter.predict_boxes(np.zeros((0, 4)))
    assert masks.shape == (0, 200, 300) and masks.dtype == bool and scores.shape == (0,)


def test_mask_prompt_refines(sam, reference):
    segmenter = _segmenter(sam, fuse=False, channels_last=False)
    masks, scores, logits = segmenter.predict_points(*POINTS)
    best = logits[np.argmax(scores)]
    refined = segmenter.predict_points(*POINTS, mask_input=best, multimask_output=False)
    expected = reference.predict(*POINTS, mask_input=best[None], multimask_output=False)
    assert refined[0].shape == (1, 200, 300)
    assert _agree(refined[0], expected[0]) > 0.9999
    assert np.abs(refined[2] - expected[2]).max() <= 1e-4 * np.abs(expected[2]).max()


def test_embedding_cache_reuses_the_encoder(sam):
    segmenter = SamSegmenter(copy.deepcopy(sam), cache_size=2)
    calls = []
    segmenter.model.image_encoder.register_forward_hook(lambda *_: calls.append(1))
    first, second, third = synthetic_image(seed=0), synthetic_image(seed=1), synthetic_image(seed=2)
    key = segmenter.set_image(first)
    embedding = segmenter.get_image_embedding().clone()
    assert segmenter.set_image(first.copy()) == key and len(calls) == 1  # same content, no encoder run
    segmenter.set_image(second)
    assert segmenter.has_embedding(first) and len(calls) == 2
    segmenter.set_image(first)
    assert len(calls) == 2 and torch.equal(segmenter.get_image_embedding(), embedding)
    segmenter.set_image(third)  # cache of 2: the least recently used (second) goes
    assert not segmenter.has_embedding(second) and segmenter.has_embedding(first) and len(calls) == 3


def test_generate_everything_matches_automatic_mask_generator(sam):
    options = dict(points_per_side=3, pred_iou_thresh=0.0, stability_score_thresh=0.0, points_per_batch=4)
    segmenter = _segmenter(sam, fuse=False, channels_last=False, decoder="sam")
    ours = segmenter.generate_everything(synthetic_image(), **options)
    theirs = SamAutomaticMaskGenerator(plain_sam_twin(sam), **options).generate(synthetic_image())
    assert len(ours) == len(theirs) > 0
    for a, b in zip(ours, theirs):
        assert np.array_equal(a["segmentation"], b["segmentation"]) and a["bbox"] == b["bbox"]
    assert segmenter.is_image_set  # still on the image afterwards
    fast = _segmenter(sam).generate_everything(synthetic_image(), **options)
    assert {"segmentation", "area", "bbox", "predicted_iou", "stability_score"} <= set(fast[0])
    assert fast[0]["segmentation"].shape == (200, 300)


@pytest.mark.slow
def test_real_1024_path():
    """Full size: M2.3 at 1024 -> 64x64 embedding; fused fast path agrees with segment_anything's predictor."""
    sam = small_sam(arch="m2_3", img_size=1024)
    image = synthetic_image(768, 1024)
    segmenter = SamSegmenter(copy.deepcopy(sam))
    segmenter.set_image(image)
    embedding = segmenter.get_image_embedding()
    assert embedding.shape == (1, 256, 64, 64)
    reference = SamPredictor(plain_sam_twin(sam))
    reference.set_image(image)
    ref_embedding = reference.get_image_embedding()
    assert (embedding - ref_embedding).abs().mean() <= 1e-3 * ref_embedding.std()
    boxes = np.array([[100, 50, 600, 500], [400, 300, 1000, 760]], dtype=np.float32)
    masks, scores = segmenter.predict_boxes(boxes)
    assert masks.shape == (2, 768, 1024)
    for i, box in enumerate(boxes):
        ref_masks, ref_scores, _ = reference.predict(box=box, multimask_output=False)
        assert _agree(masks[i], ref_masks[0]) > 0.999
        assert scores[i] == pytest.approx(ref_scores[0], abs=2e-3)


BAD = [
    ("predict_boxes", ([[10, 10, 10, 50]],), "degenerate"),
    ("predict_boxes", ([[50, 60, 20, 90]],), "degenerate"),
    ("predict_boxes", ([[400, 10, 500, 50]],), "outside the 300x200"),
    ("predict_boxes", ([[-50, -40, -1, -2]],), "outside"),
    ("predict_boxes", ([[10, 10, 50]],), r"shape \(N, 4\)"),
    ("predict_boxes", ([[10, 10, float("nan"), 50]],), "NaN"),
    ("predict_points", (np.zeros((0, 2)), np.zeros(0)), "empty"),
    ("predict_points", ([[10, 20, 30]], [1]), r"shape \(K, 2\)"),
    ("predict_points", ([[10, 20], [30, 40]], [1]), r"point_labels must have shape \(2,\)"),
    ("predict_points", ([[10, 20]], [2]), "1 \\(foreground\\) or 0"),
    ("predict_points", ([[310, 20]], [1]), "outside the 300x200"),
    ("predict_points", (None, None), "at least one point"),
]


@pytest.fixture(scope="module")
def segmenter(sam):
    return _segmenter(sam)


@pytest.mark.parametrize("method,args,message", BAD, ids=[m for _, _, m in BAD])
def test_bad_prompts_raise_clear_errors(segmenter, method, args, message):
    with pytest.raises(PromptError, match=message):
        getattr(segmenter, method)(*args)


def test_more_bad_inputs(sam):
    segmenter = SamSegmenter(copy.deepcopy(sam))
    with pytest.raises(PromptError, match="no image is set"):
        segmenter.predict_boxes(BOXES)
    with pytest.raises(PromptError, match="uint8"):
        segmenter.set_image(np.random.rand(20, 30, 3))
    with pytest.raises(PromptError, match="H x W x 3"):
        segmenter.set_image(np.zeros((20, 30, 5), dtype=np.uint8))
    segmenter.set_image(synthetic_image())
    with pytest.raises(PromptError, match=r"mask_input must have shape \(1, 64, 64\)"):
        segmenter.predict_points(*POINTS, mask_input=np.zeros((256, 256)))
    with pytest.raises(PromptError, match="one box"):
        segmenter.predict_points(*POINTS, box=BOXES[:2])
    with pytest.raises(PromptError, match="reaches outside"):
        segmenter.predict_boxes([[-5, 10, 50, 60]], clip=False)
    masks, _ = segmenter.predict_boxes([[-5, 10, 350, 60]])  # clipped to the image by default
    assert masks.shape == (1, 200, 300)
    with pytest.raises(ValueError, match="backend"):
        SamSegmenter(copy.deepcopy(sam), backend="tensorrt")

