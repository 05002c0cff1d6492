"""MM-Grounding-DINO / LLMDet through ``HFGroundingDetector``; text features cached per prompt (both families)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from repvit_plugins.grounding import DetectorLoadError
from repvit_plugins.grounding.hf_backend import MODEL_CLASSES, HFGroundingDetector, model_type_of
from repvit_plugins.grounding.text_cache import TextFeatureCache, clear_text_cache

from ._grounding_fixtures import LOW_THRESHOLDS, make_tiny_hf_grounding_dino, make_tiny_hf_mm_grounding_dino

NAMES = ["a cat", "a dog", "red frisbee"]
MAKERS = {"grounding-dino": make_tiny_hf_grounding_dino, "mm-grounding-dino": make_tiny_hf_mm_grounding_dino}


@pytest.fixture(scope="module")
def mm_dir(tmp_path_factory):
    return make_tiny_hf_mm_grounding_dino(tmp_path_factory.mktemp("mm"))


@pytest.fixture(scope="module", params=list(MAKERS))
def any_dir(request, tmp_path_factory):
    return MAKERS[request.param](tmp_path_factory.mktemp(request.param))


def _image(height, width, seed):
    return np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)


def test_the_class_comes_from_the_config_model_type(mm_dir, tmp_path):
    from transformers import MMGroundingDinoForObjectDetection

    assert model_type_of(str(mm_dir)) == "mm-grounding-dino"
    detector = HFGroundingDetector(str(mm_dir))
    assert type(detector.model) is MMGroundingDinoForObjectDetection and detector.model_type == "mm-grounding-dino"
    # MM-Grounding-DINO keeps Grounding DINO's text rules: bert-base-uncased special ids, 256 tokens
    assert detector.max_text_len == 256
    from transformers.models.mm_grounding_dino import modeling_mm_grounding_dino

    assert modeling_mm_grounding_dino.SPECIAL_TOKENS == [101, 102, 1012, 1029]
    assert set(MODEL_CLASSES) == {"grounding-dino", "mm-grounding-dino"}


def test_other_model_types_are_refused_with_the_supported_ones(mm_dir, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    config = json.loads((mm_dir / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "model_type": "owlv2"}))
    with pytest.raises(DetectorLoadError, match="'owlv2' model; HFGroundingDetector loads 'grounding-dino' and "
                                                "'mm-grounding-dino'"):
        HFGroundingDetector(str(other))
    assert model_type_of(str(other)) == "owlv2"


class _ForceLogits:
    """Forward hook on the last contrastive head: every finite logit -20, but +20 at the given (query, token)."""

    def __init__(self, cells):
        self.cells = cells

    def __call__(self, module, args, output):
        forced = torch.where(torch.isinf(output), output, torch.full_like(output, -20.0))
        for query, token in self.cells:
            forced[:, query, token] = 20.0
        return forced


def test_detections_equal_the_processor_post_processing(mm_dir):
    """On the same (forced) outputs, ``detect`` gives transformers' ``post_process_grounded_object_detection``'s
    boxes, scores and phrases (the processor's boxes clipped to the image, as ours are)."""
    detector = HFGroundingDetector(str(mm_dir), nms="none", max_detections=None)
    (chunk,) = detector.prompt_chunks(NAMES)
    cells = [(query, token) for query, name in ((4, 0), (11, 2), (17, 1)) for token in range(*chunk.spans[name])]
    seen = {}
    hooks = [detector.model.class_embed[-1].register_forward_hook(_ForceLogits(cells)),
             detector.model.register_forward_hook(lambda module, args, output: seen.update(outputs=output))]
    image = _image(60, 90, 0)
    try:
        (found,) = detector.detect(image, NAMES, box_threshold=0.5, text_threshold=0.5)
    finally:
        for hook in hooks:
            hook.remove()
    outputs = seen["outputs"]
    (expected,) = detector.processor.post_process_grounded_object_detection(
        outputs, torch.tensor([chunk.input_ids]), threshold=0.5, text_threshold=0.5, target_sizes=[(60, 90)])
    boxes = expected["boxes"].clone()
    boxes[:, 0::2], boxes[:, 1::2] = boxes[:, 0::2].clamp(0, 90), boxes[:, 1::2].clamp(0, 60)
    assert len(found) == 3
    np.testing.assert_allclose(found.xyxy, boxes.numpy(), atol=1e-4)
    np.testing.assert_allclose(found.confidence, expected["scores"].numpy(), atol=1e-6)
    assert list(found.data["class_name"]) == ["a cat", "red frisbee", "a dog"] == list(expected["text_labels"])


def test_the_fast_detector_keeps_the_stock_outputs_on_padded_batches(mm_dir):
    images = [_image(90, 130, 1), _image(70, 60, 2)]
    fast, stock = HFGroundingDetector(str(mm_dir)), HFGroundingDetector(str(mm_dir), fast_attention=False)
    for a, b in zip(fast.detect(images, NAMES, **LOW_THRESHOLDS), stock.detect(images, NAMES, **LOW_THRESHOLDS)):
        assert len(a) == len(b) > 0
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-4)  # float32 sums in another order
        np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-5)
        np.testing.assert_array_equal(a.class_id, b.class_id)


def _outputs(detector, images, precision="fp32"):
    """The model's whole output for ``images`` and the test prompt (captured while ``detector.forward`` runs)."""
    from repvit_plugins.runtime.speed import autocast

    seen = {}
    hook = detector.model.register_forward_hook(lambda module, args, output: seen.update(outputs=output))
    try:
        with torch.no_grad(), autocast("cpu", precision):
            detector.forward(images, detector.prompt_chunks(NAMES)[0])
    finally:
        hook.remove()
    return seen["outputs"]


def _relative_error(got, expected):
    finite = torch.isfinite(expected)
    return ((got.float()[finite] - expected[finite]).abs().mean() / expected[finite].std()).item()


def test_bf16_agrees_with_float32_eager(any_dir):
    """bf16 weights + autocast with the fast attentions against the float32 model with transformers' attentions.

    The continuous encoder outputs are compared everywhere. The decoder starts from the top-k encoder proposals,
    and on a tiny random model bf16 rounding swaps near-tied ones, so logits and boxes are compared on the queries
    that start from the same proposal (most of them).
    """
    images = [_image(90, 130, 3), _image(64, 80, 4)]
    reference = _outputs(HFGroundingDetector(str(any_dir), fast_attention=False, cache_text=False), images)
    got = _outputs(HFGroundingDetector(str(any_dir), precision="bf16"), images, "bf16")
    # mean |error| / std; measured 0.005 (vision) and 0.002 (text) on both families
    assert _relative_error(got.encoder_last_hidden_state_vision, reference.encoder_last_hidden_state_vision) < 0.02
    assert _relative_error(got.encoder_last_hidden_state_text, reference.encoder_last_hidden_state_text) < 0.02
    same = (got.init_reference_points.float() - reference.init_reference_points).abs().amax(-1) < 0.01
    assert same.float().mean() > 0.5, same.float().mean()  # measured 0.75-0.8
    logits, ref_logits = got.logits.float()[same], reference.logits[same]
    assert torch.equal(torch.isfinite(logits), torch.isfinite(ref_logits))
    assert _relative_error(logits, ref_logits) < 0.05  # measured 0.005-0.009
    box_error = (got.pred_boxes.float()[same] - reference.pred_boxes[same]).abs().max()
    assert box_error < 0.02  # measured 0: transformers starts the box heads' last layers at zero


def test_text_features_are_computed_once_per_prompt(any_dir):
    cached = HFGroundingDetector(str(any_dir))
    plain = HFGroundingDetector(str(any_dir), cache_text=False)
    backbone = cached.model.model.text_backbone
    assert isinstance(backbone, TextFeatureCache)
    assert cached.model.state_dict().keys() == plain.model.state_dict().keys()
    runs = []
    backbone.encoder.register_forward_hook(lambda *_: runs.append(1))
    image, images = _image(60, 80, 5), [_image(60, 80, 6), _image(50, 70, 7)]
    first = cached.detect(image, NAMES, **LOW_THRESHOLDS)
    second = cached.detect(image, NAMES, **LOW_THRESHOLDS)
    assert len(runs) == 1
    pair = cached.detect(images, NAMES, **LOW_THRESHOLDS)  # another batch size: one more run, then cached
    cached.detect(images, NAMES, **LOW_THRESHOLDS)
    assert len(runs) == 2
    cached.detect(image, ["a dog"], **LOW_THRESHOLDS)  # another prompt
    assert len(runs) == 3
    for got, expected in zip(first + second + pair, plain.detect(image, NAMES, **LOW_THRESHOLDS) * 2
                             + plain.detect(images, NAMES, **LOW_THRESHOLDS)):
        np.testing.assert_array_equal(got.xyxy, expected.xyxy)
        np.testing.assert_array_equal(got.confidence, expected.confidence)
        np.testing.assert_array_equal(got.class_id, expected.class_id)
    assert clear_text_cache(cached.model) == 3
    cached.detect(image, NAMES, **LOW_THRESHOLDS)
    assert len(runs) == 4


def test_the_text_cache_is_off_with_gradients_and_in_training(mm_dir):
    detector = HFGroundingDetector(str(mm_dir))
    backbone = detector.model.model.text_backbone
    runs = []
    backbone.encoder.register_forward_hook(lambda *_: runs.append(1))
    input_ids = torch.tensor([detector.prompt_chunks(NAMES)[0].input_ids])
    with torch.no_grad():
        backbone(input_ids)
        backbone(input_ids)
    assert len(runs) == 1
    backbone(input_ids)  # gradients on: runs, and the graph reaches the weights
    assert len(runs) == 2
    backbone.train()
    with torch.no_grad():
        backbone(input_ids)
    assert len(runs) == 3
