"""OWLv2 behind the detector interface against transformers' own forward and post-processing."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from repvit_plugins.grounding import DetectorLoadError
from repvit_plugins.grounding.owlv2_backend import Owlv2Detector
from repvit_plugins.runtime.speed import autocast

from ._grounding_fixtures import make_tiny_owlv2

NAMES = ["a cat", "dog", "red frisbee"]
ALL = {"nms": "none", "max_detections": None}  # nothing dropped after the threshold: the processor's set


@pytest.fixture(scope="module")
def owl_dir(tmp_path_factory):
    return make_tiny_owlv2(tmp_path_factory.mktemp("owlv2"))


@pytest.fixture(scope="module")
def owl(owl_dir):
    return Owlv2Detector(str(owl_dir), **ALL)


def _image(height, width, seed):
    return np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)


def _expected(detector, images, threshold):
    """transformers' forward + ``post_process_grounded_object_detection``, clipped and ordered as ``detect`` does."""
    processor = detector.processor
    inputs = processor(text=[NAMES] * len(images), images=images, return_tensors="pt")
    with torch.no_grad():
        outputs = detector.model(**inputs)
    results = processor.post_process_grounded_object_detection(
        outputs, threshold=threshold, target_sizes=[image.shape[:2] for image in images],
        text_labels=[NAMES] * len(images))
    expected = []
    for image, result in zip(images, results):
        height, width = image.shape[:2]
        boxes = result["boxes"].clone()
        boxes[:, 0::2], boxes[:, 1::2] = boxes[:, 0::2].clamp(0, width), boxes[:, 1::2].clamp(0, height)
        inside = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        order = torch.sort(result["scores"][inside], descending=True, stable=True).indices
        names = [name for name, keep in zip(result["text_labels"], inside) if keep]
        expected.append((boxes[inside][order].numpy(), result["scores"][inside][order].numpy(),
                         result["labels"][inside][order].numpy(), [names[i] for i in order]))
    return expected


def _assert_equal(found, expected):
    assert len(found) == len(expected)
    for detections, (boxes, scores, labels, names) in zip(found, expected):
        assert len(detections) == len(scores) > 0
        np.testing.assert_allclose(detections.xyxy, boxes, atol=1e-4)  # pixels; float32 rounding only
        np.testing.assert_allclose(detections.confidence, scores, atol=1e-6)
        np.testing.assert_array_equal(detections.class_id, labels)
        assert list(detections.data["class_name"]) == names


def test_detections_equal_transformers_post_processing(owl):
    image = _image(60, 90, 0)
    expected = _expected(owl, [image], threshold=0.45)
    assert 0 < len(expected[0][1]) < 64  # the threshold selects a real subset of the 64 patches
    _assert_equal(owl.detect(image, NAMES, box_threshold=0.45), expected)


def test_a_batch_of_two_sizes_equals_transformers_and_single_images(owl):
    """OWLv2 pads each image to its own square: boxes scale by each image's longer side."""
    images = [_image(60, 90, 1), _image(100, 40, 2)]
    batched = owl.detect(images, NAMES, box_threshold=0.4, batch_size=2)
    _assert_equal(batched, _expected(owl, images, threshold=0.4))
    singles = [owl.detect(image, NAMES, box_threshold=0.4)[0] for image in images]
    for one, many in zip(singles, batched):
        np.testing.assert_allclose(one.xyxy, many.xyxy, atol=1e-4)
        np.testing.assert_array_equal(one.class_id, many.class_id)


def test_text_queries_are_embedded_once_per_prompt(owl_dir):
    detector = Owlv2Detector(str(owl_dir), **ALL)
    runs = []
    detector.model.owlv2.text_model.register_forward_hook(lambda *_: runs.append(1))
    image = _image(50, 70, 3)
    first = detector.detect(image, NAMES, box_threshold=0.3)
    second = detector.detect([image, _image(40, 40, 4)], NAMES, box_threshold=0.3, batch_size=2)
    assert len(runs) == 1
    np.testing.assert_array_equal(first[0].xyxy, second[0].xyxy)
    np.testing.assert_array_equal(first[0].confidence, second[0].confidence)
    detector.detect(image, ["dog"], box_threshold=0.3)
    assert len(runs) == 2


def test_bf16_agrees_with_float32(owl_dir):
    images = [_image(60, 90, 5), _image(80, 80, 6)]
    reference, bf16 = Owlv2Detector(str(owl_dir)), Owlv2Detector(str(owl_dir), precision="bf16")
    with torch.no_grad():
        logits, boxes = reference.forward_queries(images, NAMES)
        with autocast("cpu", "bf16"):
            low_logits, low_boxes = bf16.forward_queries(images, NAMES)
    assert bf16.model.box_head.dense0.weight.dtype == torch.bfloat16
    error = (low_logits.float() - logits).abs().mean() / logits.std()
    assert error < 0.05, error  # mean |error| / std of the logits; measured 0.007
    assert (low_boxes.float() - boxes).abs().max() < 0.05  # normalized coordinates; measured 0.018


def test_a_different_input_size_interpolates_the_position_embeddings(owl_dir):
    detector = Owlv2Detector(str(owl_dir), image_size=96)
    logits, boxes = detector.forward_queries([_image(60, 90, 7)], NAMES)
    assert logits.shape == (1, 144, 3) and boxes.shape == (1, 144, 4)  # (96 / 8) ** 2 patches


def test_long_class_names_and_missing_models_fail_early(owl, tmp_path):
    with pytest.raises(ValueError, match="is 20 tokens long, more than OWLv2's limit of 16"):
        owl.detect(_image(40, 40, 8), ["dog", "abcdefghijklmnopqr"])
    with pytest.raises(DetectorLoadError, match=r"no model folder at .*nothing(.|\n)*google/owlv2-base-patch16"):
        Owlv2Detector(str(tmp_path / "nothing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DetectorLoadError, match=r"could not load the OWLv2 model(.|\n)*--local-dir DIR"):
        Owlv2Detector(str(tmp_path / "empty"))
