"""OmDet-Turbo backend on a tiny random model: parity with the processor's post-processing, batches, language
cache, bf16, loading traps and errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from repvit_plugins.grounding import DetectorLoadError, build_detector
from repvit_plugins.grounding.omdet_backend import OmDetTurboDetector, fill_meta_buffers

from ._omdet_fixtures import OMDET_LOW_THRESHOLDS, TINY_OMDET_IMAGE_SIZE, make_tiny_omdet_turbo

NAMES = ["cat", "dog", "red frisbee"]
PROMPT = "cat, dog, red frisbee"


def _image(h, w, seed):
    return np.random.RandomState(seed).randint(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def omdet_dir(tmp_path_factory):
    return make_tiny_omdet_turbo(tmp_path_factory.mktemp("omdet"))


@pytest.fixture(scope="module")
def raw(omdet_dir):
    """No NMS and no top-k: every candidate above the threshold."""
    return OmDetTurboDetector(str(omdet_dir), nms="none", max_detections=None)


def _reference(detector, image, threshold, nms_threshold, clip_first=False):
    """The processor's own pipeline: processor -> model -> ``post_process_grounded_object_detection``."""
    inputs = detector.processor(images=[image], text=NAMES, return_tensors="pt")
    inputs.pop("pixel_mask", None)  # the processor pads; the model takes no mask
    with torch.no_grad():
        outputs = detector.model(**inputs)
    if clip_first:  # clip the normalized boxes to the image, as detect() does before its NMS
        cx, cy, w, h = outputs.decoder_coord_logits.unbind(-1)
        x0, y0 = (cx - 0.5 * w).clamp(0, 1), (cy - 0.5 * h).clamp(0, 1)
        x1, y1 = (cx + 0.5 * w).clamp(0, 1), (cy + 0.5 * h).clamp(0, 1)
        outputs.decoder_coord_logits = torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)
    return detector.processor.post_process_grounded_object_detection(
        outputs, text_labels=NAMES, threshold=threshold, nms_threshold=nms_threshold,
        target_sizes=[image.shape[:2]])[0]


def _assert_same(found, ref):
    assert len(found) == len(ref["scores"]) > 0
    np.testing.assert_allclose(found.xyxy, ref["boxes"].numpy(), atol=1e-4)
    np.testing.assert_allclose(found.confidence, ref["scores"].numpy(), atol=1e-6)
    np.testing.assert_array_equal(found.class_id, ref["labels"].numpy())
    assert list(found.data["class_name"]) == [NAMES[i] for i in ref["labels"].tolist()]


@pytest.mark.parametrize("threshold", [0.0, 0.5])
@pytest.mark.parametrize("shape", [(50, 70), (90, 40)])
def test_candidates_equal_processor_post_processing(raw, threshold, shape):
    """Without NMS (the processor's IoU 1.0 keeps every box) the boxes, scores and labels are the processor's."""
    image = _image(*shape, seed=1)
    found = raw.detect(image, PROMPT, box_threshold=threshold)[0]
    _assert_same(found, _reference(raw, image, threshold, nms_threshold=1.0))


@pytest.mark.parametrize("nms_iou", [0.3, 0.5])
def test_class_nms_equals_processor_on_clipped_boxes(raw, nms_iou):
    """Class-wise NMS as the processor's ``nms_threshold``; detect() clips before NMS (the processor after),
    so the reference gets its boxes clipped first: everything else is the processor's."""
    image = _image(60, 80, seed=2)
    found = raw.detect(image, PROMPT, nms="class", nms_iou=nms_iou, box_threshold=0.2)[0]
    ref = _reference(raw, image, 0.2, nms_threshold=nms_iou, clip_first=True)
    _assert_same(found, ref)
    assert len(found) < len(raw.detect(image, PROMPT, box_threshold=0.2)[0])  # NMS removed boxes


def test_batch_of_two_sizes_equals_one_by_one(raw):
    images = [_image(50, 70, seed=3), _image(90, 40, seed=4)]
    batched = raw.detect(images, PROMPT, batch_size=2, **OMDET_LOW_THRESHOLDS)
    for image, together in zip(images, batched):
        alone = raw.detect(image, PROMPT, **OMDET_LOW_THRESHOLDS)[0]
        np.testing.assert_array_equal(together.class_id, alone.class_id)
        np.testing.assert_allclose(together.xyxy, alone.xyxy, atol=1e-3)
        np.testing.assert_allclose(together.confidence, alone.confidence, atol=1e-5)


def test_text_encoder_runs_once_per_prompt(omdet_dir):
    detector = OmDetTurboDetector(str(omdet_dir))
    calls = []
    detector.model.language_backbone.register_forward_hook(lambda module, args, kwargs_out: calls.append(1))
    images = [_image(50, 70, seed=5), _image(40, 60, seed=6)]
    first = detector.detect(images, PROMPT, batch_size=2, **OMDET_LOW_THRESHOLDS)
    assert len(calls) == 2  # the classes once and the task once, for both images
    second = detector.detect(images, PROMPT, batch_size=2, **OMDET_LOW_THRESHOLDS)
    assert len(calls) == 2  # the language cache answered
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a.xyxy, b.xyxy)
    detector.detect(images[0], "cat, bus", **OMDET_LOW_THRESHOLDS)
    assert len(calls) == 4  # a new prompt is encoded


def _iou(a, b):
    lt, rb = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
    inter = np.prod(np.clip(rb - lt, 0, None))
    return inter / (np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter)


def test_bf16_agrees_with_fp32(omdet_dir, raw):
    """bf16 autocast (weights cast once) changes which queries the encoder selects a little, so detections are
    matched, not compared index by index: each of fp32's 10 best has a bf16 detection of its class with a score
    within 0.02 (sigmoid scale) and IoU >= 0.8 (boxes of 2-20 pixels on a 64-pixel input)."""
    bf16 = OmDetTurboDetector(str(omdet_dir), precision="bf16", nms="none", max_detections=None)
    assert bf16.model.decoder.decoder_class_head[0].weight.dtype == torch.bfloat16
    for seed, shape in enumerate([(50, 70), (90, 40)]):
        image = _image(*shape, seed=seed)
        ref = raw.detect(image, PROMPT, **OMDET_LOW_THRESHOLDS)[0]
        got = bf16.detect(image, PROMPT, **OMDET_LOW_THRESHOLDS)[0]
        assert got.xyxy.dtype == np.float32
        assert len(bf16.detect(image, PROMPT, nms="class", box_threshold=0.3)[0])  # NMS on float32 boxes
        for box, score, cls in zip(ref.xyxy[:10], ref.confidence[:10], ref.class_id[:10]):
            same = (got.class_id == cls) & (np.abs(got.confidence - score) <= 0.02)
            assert any(_iou(box, other) >= 0.8 for other in got.xyxy[same]), (box, score, cls)


def test_meta_buffers_are_filled_after_loading(omdet_dir):
    from transformers import OmDetTurboForObjectDetection

    model = OmDetTurboForObjectDetection.from_pretrained(str(omdet_dir))
    meta = [name for name, b in model.named_buffers() if b.is_meta]
    filled = fill_meta_buffers(model)
    assert filled == len(meta)  # six timm Swin attn_mask buffers with transformers 4.57.6 + timm 1.0.31
    assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])
    unfilled = torch.nn.Sequential(torch.nn.Linear(2, 2, device="meta"))
    with pytest.raises(DetectorLoadError, match="meta device"):
        fill_meta_buffers(unfilled)


def test_detections_carry_prompt_class_names(omdet_dir):
    detector = OmDetTurboDetector(str(omdet_dir), max_detections=5)
    found = detector.detect(_image(50, 70, seed=7), ["Red Frisbee", "cat"], **OMDET_LOW_THRESHOLDS)[0]
    assert 0 < len(found) <= 5
    assert set(found.data["class_name"]) <= {"Red Frisbee", "cat"}
    assert [["Red Frisbee", "cat"][i] for i in found.class_id] == list(found.data["class_name"])
    assert (found.xyxy[:, 2] <= 70).all() and (found.xyxy[:, 3] <= 50).all() and (found.xyxy >= 0).all()


def test_missing_folder_names_what_to_download(tmp_path):
    with pytest.raises(DetectorLoadError) as err:
        OmDetTurboDetector(str(tmp_path / "no-such-omdet"))
    assert "huggingface-cli download omlab/omdet-turbo-swin-tiny-hf" in str(err.value)


def test_uncached_hub_id_offline_names_what_to_download(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DetectorLoadError) as err:
        OmDetTurboDetector("someone/omdet-not-cached")
    assert "could not load the OmDet-Turbo model" in str(err.value)
    assert "huggingface-cli download someone/omdet-not-cached" in str(err.value)


def test_input_size_is_the_processors_unless_overridden(omdet_dir, raw):
    shapes = []

    def record(module, args):
        shapes.append(tuple(args[0].shape))

    handle = raw.model.vision_backbone.register_forward_pre_hook(record)
    raw.detect(_image(50, 70, seed=8), PROMPT, **OMDET_LOW_THRESHOLDS)
    handle.remove()
    detector = OmDetTurboDetector(str(omdet_dir), image_size=96)
    detector.model.vision_backbone.register_forward_pre_hook(record)
    found = detector.detect([_image(50, 70, seed=8), _image(90, 40, seed=9)], PROMPT, batch_size=2,
                            **OMDET_LOW_THRESHOLDS)
    size = TINY_OMDET_IMAGE_SIZE
    assert shapes == [(1, 3, size, size), (2, 3, 96, 96)] and all(len(f) for f in found)
    assert (found[1].xyxy[:, 2] <= 40).all() and (found[1].xyxy[:, 3] <= 90).all()
    with pytest.raises(ValueError, match="multiple of 32"):
        OmDetTurboDetector(str(omdet_dir), image_size=100)


def test_too_long_class_is_refused(raw):
    with pytest.raises(ValueError, match="77 tokens"):
        raw.detect(_image(50, 70, seed=10), ["x" * 80, "cat"])


def test_factory_builds_omdet_from_its_folder(omdet_dir, raw):
    detector = build_detector("hf", model=str(omdet_dir), nms="none", max_detections=None)
    assert isinstance(detector, OmDetTurboDetector)
    image = _image(50, 70, seed=11)
    np.testing.assert_array_equal(detector.detect(image, PROMPT, **OMDET_LOW_THRESHOLDS)[0].xyxy,
                                  raw.detect(image, PROMPT, **OMDET_LOW_THRESHOLDS)[0].xyxy)
