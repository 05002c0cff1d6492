"""GroundedSAM: tiny transformers Grounding DINO + random RepViT-SAM, checked against segment_anything's predictor."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from repvit_plugins.grounding import GroundedSAM, GroundingDetector, PromptChunk, build_detector, parse_prompt
from repvit_plugins.models import build_repvit_sam
from repvit_plugins.sam import SamSegmenter

from ._grounding_fixtures import make_tiny_hf_grounding_dino

PROMPT = "a cat. a dog. a red ball."


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    return build_detector("hf", model=str(make_tiny_hf_grounding_dino(tmp_path_factory.mktemp("gd"))), max_detections=6)


@pytest.fixture(scope="module")
def sam():
    torch.manual_seed(0)
    return build_repvit_sam(arch="m0_6", img_size=256)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(1)
    return [rng.integers(0, 255, (90, 120, 3), dtype=np.uint8), rng.integers(0, 255, (100, 70, 3), dtype=np.uint8)]


def _pipeline(detector, sam, **options):
    segmenter = SamSegmenter(sam=sam, fuse=False, channels_last=False)
    return GroundedSAM(detector, segmenter, box_threshold=0.0, text_threshold=0.0, **options)


def test_masks_equal_single_box_predictor_calls(detector, sam, images):
    from segment_anything import SamPredictor

    result = _pipeline(detector, sam).predict(images[0], PROMPT)
    assert len(result) > 1
    reference = SamPredictor(sam)
    reference.set_image(images[0])
    for box, mask, score in zip(result.xyxy, result.mask, result.data["mask_score"]):
        ref_masks, ref_scores, _ = reference.predict(box=box, multimask_output=False)
        assert (ref_masks[0] != mask).mean() < 1e-3
        assert score == pytest.approx(float(ref_scores[0]), abs=1e-4)


def test_detections_are_consistent(detector, sam, images):
    classes = parse_prompt(PROMPT)
    for image, found in zip(images, _pipeline(detector, sam).predict(images, PROMPT)):
        assert found.mask.shape == (len(found), *image.shape[:2]) and found.mask.dtype == bool
        assert found.class_id.min() >= 0 and found.class_id.max() < len(classes)
        assert [classes[i] for i in found.class_id] == list(found.data["class_name"])
        assert (found.xyxy[:, 2] <= image.shape[1]).all() and (found.xyxy[:, 3] <= image.shape[0]).all()


def test_list_of_images_equals_one_by_one(detector, sam, images):
    # same-size images: a detector batch pads different sizes, which changes Grounding DINO's outputs slightly
    batch = [images[0], images[0][::-1].copy()]
    pipeline = _pipeline(detector, sam)
    together = pipeline.predict(batch, ["cat", "dog"])
    for image, found in zip(batch, together):
        alone = pipeline.predict(image, ["cat", "dog"])
        np.testing.assert_allclose(found.xyxy, alone.xyxy, atol=1e-3)
        assert (found.mask != alone.mask).mean() < 1e-3


def test_multimask_keeps_the_best_of_three(detector, sam, images):
    from segment_anything import SamPredictor

    found = _pipeline(detector, sam, multimask=True).predict(images[0], PROMPT)
    reference = SamPredictor(sam)
    reference.set_image(images[0])
    for box, score in zip(found.xyxy, found.data["mask_score"]):
        _, scores, _ = reference.predict(box=box, multimask_output=True)
        assert score == pytest.approx(float(scores.max()), abs=1e-4)


def test_refinement_and_boxes_from_masks(detector, sam, images):
    import supervision as sv

    plain = _pipeline(detector, sam).predict(images[0], PROMPT)
    refined = _pipeline(detector, sam, min_area=50, fill_holes=True, boxes_from_masks=True).predict(images[0], PROMPT)
    assert refined.mask.sum() != plain.mask.sum() or plain.mask.sum() == 0
    nonempty = refined.mask.reshape(len(refined), -1).any(1)
    np.testing.assert_array_equal(refined.xyxy[nonempty], sv.mask_to_xyxy(refined.mask[nonempty]).astype(np.float32))


def test_no_boxes_gives_empty_masks(detector, sam, images):
    pipeline = GroundedSAM(detector, SamSegmenter(sam=sam, fuse=False, channels_last=False), box_threshold=1.0)
    found = pipeline.predict(images[1], PROMPT)
    assert len(found) == 0 and found.mask.shape == (0, *images[1].shape[:2])


class MaskingDetector(GroundingDetector):
    """A stand-in closed-set detector: one box per class, masks (a pattern) on the padded image it is given."""

    predicts_masks = True
    tokenizer = None

    def __init__(self):
        super().__init__()
        self.seen = []

    def prompt_chunks(self, names):
        return [PromptChunk(tuple(names), tuple(range(len(names))), "", (), ())]

    def predict_batch(self, images, chunks, box_threshold, text_threshold):
        found = []
        for image in images:
            self.seen.append(image.shape)
            h, w = image.shape[:2]
            pattern = torch.arange(h * w).reshape(h, w) % 3 == 0
            n = len(chunks[0].names)
            xyxy = torch.tensor([[0.0, 0.0, w / 2, 4.0]] * n)
            found.append([(xyxy, torch.linspace(0.9, 0.5, n), torch.arange(n), torch.stack([pattern] * n))])
        return found


def test_detector_masks_follow_nms_and_are_cropped_to_the_image():
    detector = MaskingDetector()
    image = np.zeros((8, 400, 3), np.uint8)  # padded to 50 x 400 for detection
    pipeline = GroundedSAM(detector, None, masks="detector", nms="none")
    found = pipeline.predict(image, "a cat. a dog.")
    assert detector.seen == [(50, 400, 3)] and found.mask.shape == (2, 8, 400)
    expected = (np.arange(50 * 400).reshape(50, 400) % 3 == 0)[:8]
    np.testing.assert_array_equal(found.mask, np.stack([expected] * 2))
    np.testing.assert_array_equal(found.data["mask_score"], found.confidence)
    # class-wise top-k keeps the masks of the boxes it keeps
    assert len(GroundedSAM(detector, None, masks="detector", max_detections=1).predict(image, "a cat. a dog.")) == 1
    # with masks='sam' the detector's masks are dropped (SAM draws them)
    assert detector.detect(image, "a cat.")[0].mask is None


def test_mask_source_is_checked_when_the_pipeline_is_made(detector, sam):
    with pytest.raises(ValueError, match="needs a detector that predicts masks.*HFGroundingDetector"):
        GroundedSAM(detector, None, masks="detector")
    with pytest.raises(ValueError, match="masks='sam' needs a segmenter"):
        GroundedSAM(detector, None)


def test_stage_timer_reports_the_stages_and_changes_no_result(detector, sam, images, tmp_path):
    import time

    from PIL import Image

    from repvit_plugins.runtime.stage_timer import StageTimer

    paths = []
    for i, image in enumerate(images):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(image).save(paths[-1])
    plain = _pipeline(detector, sam, batch_size=1).predict(paths, PROMPT)  # one size per detector batch
    timer = StageTimer()
    pipeline = _pipeline(detector, sam, batch_size=1)
    pipeline.timer = timer
    start = time.perf_counter()
    timed_run = pipeline.predict(paths, PROMPT)
    wall = time.perf_counter() - start
    seconds = timer.take()
    assert set(seconds) == {"load", "detect", "encoder", "decoder", "masks"}
    assert all(s > 0 for s in seconds.values())
    assert 0.8 * wall <= sum(seconds.values()) <= wall
    assert timer.take() == {}
    for a, b in zip(plain, timed_run):
        np.testing.assert_array_equal(a.xyxy, b.xyxy)
        np.testing.assert_array_equal(a.mask, b.mask)
        np.testing.assert_array_equal(a.data["mask_score"], b.data["mask_score"])
