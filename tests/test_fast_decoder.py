"""The fast many-box decoding path against segment_anything's ``SamPredictor`` on the same random weights.

Tolerances: the fast path reorders float32 sums (projections moved onto the
tokens, the two bilinear resizes folded into two GEMMs), nothing is computed in
lower precision. So logits agree to 1e-4 of their largest magnitude, scores to
1e-5, and a thresholded mask may differ only at pixels whose logit is within
rounding of zero: mask IoU >= 0.999 (in practice 1.0).
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor

from repvit_plugins.sam import SamSegmenter
from repvit_plugins.sam.decoder import FastMaskDecoder
from repvit_plugins.sam.mask_resize import postprocess_masks

from ._sam_fixtures import plain_sam_twin, small_sam, synthetic_image

LOGIT_RTOL = 1e-4
SCORE_ATOL = 1e-5
MIN_MASK_IOU = 0.999

SHAPES = {"wide": (200, 300), "tall": (310, 170), "square": (128, 128)}


@pytest.fixture(scope="module")
def sam():
    return small_sam(seed=3)


@pytest.fixture(scope="module", params=list(SHAPES))
def pair(request, sam):
    """Our segmenter (unfused encoder: embeddings identical to the reference's) and segment_anything's predictor."""
    image = synthetic_image(*SHAPES[request.param], seed=1)
    ours = SamSegmenter(copy.deepcopy(sam), fuse=False, channels_last=False, chunk_size=3)
    ours.set_image(image)
    reference = SamPredictor(plain_sam_twin(sam))
    reference.set_image(image)
    assert torch.equal(ours.get_image_embedding(), reference.get_image_embedding())
    return ours, reference


def _boxes(h: int, w: int) -> np.ndarray:
    """Boxes inside, touching each border and corner, and the whole image."""
    return np.array([[0.1 * w, 0.2 * h, 0.6 * w, 0.7 * h], [0, 0, 0.5 * w, 0.4 * h], [0.5 * w, 0.3 * h, w, h],
                     [0, 0.5 * h, w, h], [0, 0, w, h], [0.3 * w, 0, 0.45 * w, 0.2 * h], [0.8 * w, 0.1 * h, w, 0.9 * h]],
                    dtype=np.float32)


def _mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a.flatten(1), b.flatten(1)
    return (a & b).sum(1) / (a | b).sum(1).clamp(min=1)


def _assert_agree(ours, theirs) -> None:
    masks, scores, low = ours
    ref_masks, ref_scores, ref_low = theirs
    assert masks.shape == ref_masks.shape and masks.dtype == ref_masks.dtype
    assert scores.shape == ref_scores.shape and low.shape == ref_low.shape
    assert (low - ref_low).abs().max() <= LOGIT_RTOL * ref_low.abs().max()
    assert (scores - ref_scores).abs().max() <= SCORE_ATOL
    if masks.dtype == torch.bool:
        assert _mask_iou(masks.flatten(0, 1), ref_masks.flatten(0, 1)).min() >= MIN_MASK_IOU
    else:
        assert (masks - ref_masks).abs().max() <= LOGIT_RTOL * ref_masks.abs().max()


@pytest.mark.parametrize("count", [1, 7])
@pytest.mark.parametrize("multimask", [False, True])
def test_predict_torch_matches_segment_anything(pair, count, multimask):
    ours, reference = pair
    boxes = _boxes(*ours.image_size)[:count]
    boxes_t = torch.as_tensor(reference.transform.apply_boxes(boxes, ours.image_size))
    theirs = reference.predict_torch(None, None, boxes_t, multimask_output=multimask)
    _assert_agree(ours.predictor.predict_torch(None, None, boxes_t, multimask_output=multimask), theirs)
    logits = reference.predict_torch(None, None, boxes_t, multimask_output=multimask, return_logits=True)
    _assert_agree(ours.predictor.predict_torch(None, None, boxes_t, multimask_output=multimask, return_logits=True),
                  logits)


@pytest.mark.parametrize("multimask", [False, True])
def test_predict_boxes_keeps_the_reference_best_mask(pair, multimask):
    ours, reference = pair
    boxes = _boxes(*ours.image_size)
    masks, scores = ours.predict_boxes(boxes, multimask_output=multimask)
    boxes_t = torch.as_tensor(reference.transform.apply_boxes(boxes, ours.image_size))
    ref_masks, ref_scores, _ = reference.predict_torch(None, None, boxes_t, multimask_output=multimask)
    best = ref_scores.argmax(1)
    rows = torch.arange(len(boxes))
    assert masks.shape == (len(boxes), *ours.image_size) and masks.dtype == bool
    np.testing.assert_allclose(scores, ref_scores[rows, best].numpy(), atol=SCORE_ATOL)
    assert _mask_iou(torch.from_numpy(masks), ref_masks[rows, best]).min() >= MIN_MASK_IOU


def test_no_boxes(pair):
    ours, _ = pair
    h, w = ours.image_size
    masks, scores = ours.predict_boxes(np.zeros((0, 4)))
    assert masks.shape == (0, h, w) and masks.dtype == bool and scores.shape == (0,)
    for multimask, count in ((False, 1), (True, 3)):
        masks, scores, low = ours.predictor.predict_torch(None, None, torch.zeros(0, 4), multimask_output=multimask)
        assert masks.shape == (0, count, h, w) and masks.dtype == torch.bool
        assert scores.shape == (0, count) and low.shape == (0, count, 64, 64)


def test_token_blocks_of_the_upscaling_do_not_change_masks(sam):
    """A full-size 64x64 embedding, upscaled in uneven token blocks, equals segment_anything's ``MaskDecoder``."""
    full = small_sam(seed=3, img_size=1024)
    embedding = torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(0))
    boxes = torch.tensor([[0.0, 0.0, 1024.0, 1024.0], [100.0, 700.0, 400.0, 1024.0], [900.0, 10.0, 1024.0, 300.0]])
    decoder = FastMaskDecoder(full)
    decoder.UPSCALE_BLOCK = 1000  # 4096 tokens: four full blocks and a partial one
    with torch.no_grad():
        sparse, dense = full.prompt_encoder(None, boxes, None)
        ref, ref_iou = full.mask_decoder(embedding, full.prompt_encoder.get_dense_pe(), sparse, dense, True)
        masks, iou = decoder(decoder.prepare(embedding), sparse, None, True)
    assert (masks - ref).abs().max() <= LOGIT_RTOL * ref.abs().max()
    assert (iou - ref_iou).abs().max() <= SCORE_ATOL


@pytest.mark.parametrize("size", [(200, 300), (300, 451), (451, 300), (512, 512), (7, 1000), (1, 1)])
def test_mask_resize_equals_postprocess_masks(sam, size, monkeypatch):
    """Folding both bilinear resizes into two GEMMs gives ``Sam.postprocess_masks`` (and the fallback does too)."""
    low = torch.randn(3, 2, 64, 64, generator=torch.Generator().manual_seed(0)) * 4
    scale = sam.image_encoder.img_size / max(size)
    input_size = (int(size[0] * scale + 0.5), int(size[1] * scale + 0.5))
    expected = sam.postprocess_masks(low, input_size, size)
    got = postprocess_masks(low, sam.image_encoder.img_size, input_size, size)
    assert got.shape == expected.shape == (3, 2, *size)
    assert (got - expected).abs().max() <= LOGIT_RTOL * expected.abs().max()
    monkeypatch.setattr("repvit_plugins.sam.mask_resize.MAX_GEMM_PIXELS", 0)
    assert torch.equal(postprocess_masks(low, sam.image_encoder.img_size, input_size, size), expected)


BF16_MIN_MASK_IOU = 0.98
"""bf16 keeps 8 mantissa bits: on random weights logits move by a few percent of their spread and pixels whose
logit is that close to zero flip (measured: IoU >= 0.994 here, >= 0.989 with random EdgeSAM on the demo
photos). The bf16 encoder the same presets run moves masks more (IoU about 0.977 against float32 there)."""
BF16_SCORE_ATOL = 0.01  # measured <= 0.0023


@pytest.mark.parametrize("multimask", [False, True])
def test_bf16_decoder_agrees_with_segment_anything(multimask):
    """The autocast path of the fast decoder against segment_anything's float32 ``MaskDecoder``."""
    full = small_sam(seed=3, img_size=1024)
    embedding = torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(1))
    boxes = torch.tensor([[0.0, 0.0, 1024.0, 1024.0], [100.0, 700.0, 400.0, 1024.0], [900.0, 10.0, 1024.0, 300.0],
                          [300.0, 200.0, 700.0, 650.0], [10.0, 400.0, 200.0, 520.0]])
    decoder = FastMaskDecoder(full, precision="bf16")
    with torch.no_grad():
        sparse, dense = full.prompt_encoder(None, boxes, None)
        ref, ref_iou = full.mask_decoder(embedding, full.prompt_encoder.get_dense_pe(), sparse, dense, multimask)
        masks, iou = decoder(decoder.prepare(embedding), sparse, None, multimask)
    assert masks.dtype == iou.dtype == torch.float32 and masks.shape == ref.shape
    assert not torch.equal(masks, ref)  # it did run in bf16
    assert _mask_iou((masks > 0).flatten(0, 1), (ref > 0).flatten(0, 1)).min() >= BF16_MIN_MASK_IOU
    assert (iou - ref_iou).abs().max() <= BF16_SCORE_ATOL


def test_decoder_precision_is_checked(sam):
    with pytest.raises(ValueError, match="precision"):
        FastMaskDecoder(sam, precision="int8")
