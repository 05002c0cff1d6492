"""Grounding detectors: prompt parsing and class mapping, both real backends on tiny random models, NMS, errors."""
from __future__ import annotations

import urllib.error
import urllib.request

import numpy as np
import pytest
import torch

from repvit_plugins.grounding import (
    DetectorLoadError,
    build_caption,
    build_detector,
    class_text,
    parse_prompt,
    select_detections,
    tokenize_prompt,
)
from repvit_plugins.grounding.prompts import score_queries
from repvit_plugins.weights.checkpoint_io import CheckpointError

from ._grounding_fixtures import (
    LOW_THRESHOLDS,
    make_tiny_hf_grounding_dino,
    make_tiny_mmdet_grounding_dino,
    make_tiny_original_grounding_dino,
    tiny_tokenizer,
)

DOT = 1012
PROMPT = "a cat. a dog. shohy. red frisbee."
NAMES = ["a cat", "a dog", "shohy", "red frisbee"]


def _image(h, w, seed):
    return np.random.RandomState(seed).randint(0, 256, (h, w, 3), dtype=np.uint8)



@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return tiny_tokenizer(tmp_path_factory.mktemp("vocab"))


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    return make_tiny_hf_grounding_dino(tmp_path_factory.mktemp("hf"))


@pytest.fixture(scope="module")
def hf_raw(hf_dir):
    """An hf detector with no NMS and no top-k, so its output is every query that passes the thresholds."""
    return build_detector("hf", model=str(hf_dir), nms=None, max_detections=None)


@pytest.fixture(scope="module")
def original_kwargs(tmp_path_factory):
    pytest.importorskip("groundingdino")
    return make_tiny_original_grounding_dino(tmp_path_factory.mktemp("original"))


@pytest.fixture(scope="module")
def original_raw(original_kwargs):
    return build_detector("original", **original_kwargs, nms=None, max_detections=None)


@pytest.fixture(scope="module")
def mmdet_kwargs(tmp_path_factory):
    pytest.importorskip("mmdet")
    return make_tiny_mmdet_grounding_dino(tmp_path_factory.mktemp("mmdet"))


# ----------------------------------------------------------------------------- prompts


@pytest.mark.parametrize("prompt, expected", [
    ("a cat. a dog.", ["a cat", "a dog"]),
    ("a cat . a dog .", ["a cat", "a dog"]),
    ("dog", ["dog"]),
    ("A Cat. a cat. CAT", ["A Cat", "CAT"]),
    ("person?car\nbus; bike.", ["person", "car", "bus", "bike"]),
    ("  many   spaces  here . x..", ["many spaces here", "x"]),
    (["dog", " Dog ", "cat", "DOG"], ["dog", "cat"]),
    (["st. bernard", "hot dog"], ["st. bernard", "hot dog"]),
    (("b", "a"), ["b", "a"]),
])
def test_parse_prompt(prompt, expected):
    assert parse_prompt(prompt) == expected


@pytest.mark.parametrize("prompt", ["", "   ", " . . ", [], ["", " "], "?;\n"])
def test_empty_prompt_raises_clear_error(prompt):
    with pytest.raises(ValueError, match="names no class"):
        parse_prompt(prompt)


def test_non_text_prompt_raises():
    with pytest.raises(ValueError, match="string or a list of strings"):
        parse_prompt(123)


def test_caption_and_class_text():
    assert build_caption(["A Cat", "dog"]) == "a cat . dog ."
    assert class_text("St. Bernard?") == "st bernard"


@pytest.mark.parametrize("prompt", [PROMPT, "dog", ["st. bernard", "Frisbees", "unknownword dog"], "a. b. c. d. e."])
def test_tokenized_chunks_match_the_tokenizer(tokenizer, prompt):
    names = parse_prompt(prompt)
    (chunk,) = tokenize_prompt(names, tokenizer)
    assert chunk.class_ids == tuple(range(len(names)))
    assert chunk.caption == build_caption(names)
    assert list(chunk.input_ids) == tokenizer(chunk.caption)["input_ids"]
    for name, (start, end) in zip(names, chunk.spans):
        assert tokenizer.convert_ids_to_tokens(list(chunk.input_ids[start:end])) == tokenizer.tokenize(class_text(name))
        assert chunk.input_ids[end] == DOT
    assert chunk.input_ids[0] == tokenizer.cls_token_id and chunk.input_ids[-1] == tokenizer.sep_token_id


def test_long_prompts_are_split_into_whole_classes(tokenizer):
    names = [f"{color} {thing}" for color in ("red", "blue", "green", "big", "small") for thing in
             ("cat", "dog", "car", "bus", "tree", "house", "cup", "chair")]  # 40 classes, 3 tokens each with '.'
    for limit in (8, 12, 31):
        chunks = tokenize_prompt(names, tokenizer, max_tokens=limit)
        assert [i for c in chunks for i in c.class_ids] == list(range(len(names)))
        for chunk, following in zip(chunks, chunks[1:] + [None]):
            assert len(chunk.input_ids) <= limit
            assert list(chunk.input_ids) == tokenizer(chunk.caption)["input_ids"]
            if following is not None:  # greedy: the next class would not have fitted
                assert len(chunk.input_ids) + 3 > limit
        assert len(chunks) == -(-len(names) // ((limit - 2) // 3))
    many = [f"{w} {v}" for w in ("red", "blue", "green", "big", "small", "cat", "dog", "car", "bus", "tree")
            for v in ("cup", "chair", "table", "bottle", "apple", "banana", "sky", "grass", "road", "ball")]
    chunks = tokenize_prompt(many, tokenizer)  # 100 classes x 3 tokens + 2 > 256
    assert [len(c.class_ids) for c in chunks] == [84, 16]
    assert max(len(c.input_ids) for c in chunks) <= 256


def test_a_class_longer_than_the_limit_raises(tokenizer):
    with pytest.raises(ValueError, match="longer than the text encoder's limit|more than the text encoder's"):
        tokenize_prompt(["a " * 20 + "cat"], tokenizer, max_tokens=16)


def test_score_queries_maps_word_pieces_to_their_class(tokenizer):
    names = parse_prompt(PROMPT)
    (chunk,) = tokenize_prompt(names, tokenizer)
    tokens = tokenizer.convert_ids_to_tokens(list(chunk.input_ids))
    assert "##hy" in tokens
    logits = torch.full((5, 256), -8.0)
    logits[:, len(tokens):] = float("-inf")
    logits[0, tokens.index("##hy")] = 3.0                    # a word piece -> its whole class
    logits[1, tokens.index("dog")] = 1.0                     # 'a dog'
    logits[1, tokens.index("cat")] = 0.5
    logits[2, 0] = 9.0                                       # only [CLS] and '.' high: no class token
    logits[2, tokens.index(".")] = 9.0
    logits[3, tokens.index("frisbee")] = -0.5                # below the box threshold
    logits[4, tokens.index("red")] = 2.0                     # first token of 'red frisbee'
    keep, scores, labels = score_queries(logits, chunk.spans, box_threshold=0.4, text_threshold=0.25)
    assert keep.tolist() == [0, 1, 4]
    assert [names[i] for i in labels] == ["shohy", "a dog", "red frisbee"]
    torch.testing.assert_close(scores, torch.sigmoid(torch.tensor([3.0, 1.0, 2.0])))
    keep, _, _ = score_queries(logits, chunk.spans, box_threshold=0.4, text_threshold=0.8)
    assert keep.tolist() == [0, 4]  # a query needs a class token above the text threshold


# ----------------------------------------------------------------------------- NMS and top-k


def test_select_detections_nms_modes_and_max_detections():
    xyxy = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60], [51, 51, 61, 61]],
                        dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.95])
    classes = torch.tensor([0, 1, 0, 0, 0])
    assert select_detections(xyxy, scores, classes, nms="class", nms_iou=0.5).tolist() == [4, 0, 1]
    assert select_detections(xyxy, scores, classes, nms="agnostic", nms_iou=0.5).tolist() == [4, 0]
    assert select_detections(xyxy, scores, classes, nms=None).tolist() == [4, 0, 1, 2, 3]
    assert select_detections(xyxy, scores, classes, nms="class", nms_iou=0.9).tolist() == [4, 0, 1, 3]
    assert select_detections(xyxy, scores, classes, nms=None, max_detections=2).tolist() == [4, 0]
    empty = torch.zeros((0, 4))
    assert select_detections(empty, torch.zeros(0), torch.zeros(0, dtype=torch.long)).tolist() == []


@pytest.mark.parametrize("kwargs, message", [
    (dict(nms="box"), "nms must be"), (dict(nms_iou=0.0), "nms_iou"), (dict(max_detections=0), "max_detections"),
])
def test_detector_options_are_validated(hf_dir, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_detector("hf", model=str(hf_dir), **kwargs)


def test_hf_resize_options_reach_the_processor(hf_dir):
    detector = build_detector("hf", model=str(hf_dir), image_size=32, max_size=40)
    inputs = detector.preprocess([_image(50, 70, 0), _image(70, 50, 1)])
    assert inputs["pixel_values"].shape[-2:] == (40, 40)  # 50x70 -> 29x40 (long edge capped), 70x50 -> 40x29
    assert inputs["pixel_mask"][0].sum(0).max() == 29 and inputs["pixel_mask"][1].sum(1).max() == 29


def test_importing_the_package_loads_no_backend():
    import subprocess
    import sys

    code = ("import sys, repvit_plugins.grounding, repvit_plugins.io; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'transformers', 'groundingdino', 'mmdet', 'mmengine', 'mmseg', 'gradio', 'supervision'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ----------------------------------------------------------------------------- shared checks


def _expected(logits, boxes, input_ids, height, width, box_threshold, text_threshold):
    """Detections computed directly from raw outputs: classes are the token runs between '.' separators."""
    ids = list(input_ids)
    spans, start = [], 1
    for i, token in enumerate(ids):
        if token == DOT:
            spans.append((start, i))
            start = i + 1
    probs = torch.sigmoid(logits[:, :len(ids)].float())
    per_class = torch.stack([probs[:, s:e].max(dim=1).values for s, e in spans], dim=1)
    conf, label = per_class.max(dim=1)
    keep = (conf > box_threshold) & (conf > text_threshold)
    cx, cy, w, h = boxes[keep].unbind(-1)
    xyxy = torch.stack([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height], -1)
    xyxy[:, 0::2] = xyxy[:, 0::2].clamp(0, width)
    xyxy[:, 1::2] = xyxy[:, 1::2].clamp(0, height)
    order = torch.sort(conf[keep], descending=True, stable=True).indices
    return xyxy[order].numpy(), conf[keep][order].numpy(), label[keep][order].numpy()


def _check_structure(detections, image, names):
    n = len(detections)
    assert detections.xyxy.dtype == np.float32 and detections.xyxy.shape == (n, 4)
    assert detections.confidence.dtype == np.float32 and detections.confidence.shape == (n,)
    assert np.issubdtype(detections.class_id.dtype, np.integer)
    assert ((detections.class_id >= 0) & (detections.class_id < len(names))).all()
    assert list(detections.data["class_name"]) == [names[i] for i in detections.class_id]
    assert not any(name.startswith("##") or name == "None" for name in detections.data["class_name"])
    assert (np.diff(detections.confidence) <= 0).all()
    h, w = image.shape[:2]
    assert (detections.xyxy >= 0).all() and (detections.xyxy[:, [0, 2]] <= w).all()
    assert (detections.xyxy[:, [1, 3]] <= h).all()
    assert (detections.xyxy[:, 2:] >= detections.xyxy[:, :2]).all()


def _same(a, b, atol=1e-5):
    assert len(a) == len(b)
    np.testing.assert_allclose(a.xyxy, b.xyxy, atol=atol)
    np.testing.assert_allclose(a.confidence, b.confidence, atol=atol)
    np.testing.assert_array_equal(a.class_id, b.class_id)


class _ForceLogits:
    """Forward hook on a contrastive head: every logit -20, except ``value`` at ``(query, token)`` pairs."""

    def __init__(self, cells, value=20.0):
        self.cells, self.value = cells, value

    def __call__(self, module, args, output):
        forced = torch.where(torch.isinf(output), output, torch.full_like(output, -20.0))
        for query, token in self.cells:
            forced[:, query, token] = self.value
        return forced


def _pixel_box(cxcywh, height, width):
    cx, cy, w, h = cxcywh.tolist()
    box = [(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height]
    return np.clip(box, 0, [width, height, width, height])


def _capture_boxes(model):
    seen = {}

    def hook(module, args, output):
        seen["boxes"] = output["pred_boxes"] if isinstance(output, dict) else output.pred_boxes
    return seen, model.register_forward_hook(hook)


# ----------------------------------------------------------------------------- hf backend


def test_hf_detections_structure_and_determinism(hf_dir):
    detector = build_detector("hf", model=str(hf_dir))
    images = [_image(50, 70, 0), _image(30, 40, 1)]
    first = detector.detect(images, PROMPT, **LOW_THRESHOLDS)
    again = detector.detect(images, PROMPT, **LOW_THRESHOLDS)
    assert len(first) == 2
    for detections, image, repeat in zip(first, images, again):
        assert len(detections) > 0
        _check_structure(detections, image, NAMES)
        _same(detections, repeat, atol=0)
    assert len(set(first[0].class_id.tolist())) > 1


def test_hf_postprocessing_equals_direct_computation(hf_raw):
    image = _image(50, 70, 2)
    (found,) = hf_raw.detect(image, PROMPT, box_threshold=0.5, text_threshold=0.3)
    inputs = hf_raw.processor(images=image, text=PROMPT.replace(".", " ."), return_tensors="pt")
    with torch.no_grad():
        outputs = hf_raw.model(**inputs)
    xyxy, conf, label = _expected(outputs.logits[0], outputs.pred_boxes[0], inputs["input_ids"][0].tolist(),
                                  50, 70, 0.5, 0.3)
    assert 0 < len(conf) < outputs.logits.shape[1]  # the thresholds select a real subset
    np.testing.assert_allclose(found.xyxy, xyxy, atol=1e-4)
    np.testing.assert_allclose(found.confidence, conf, atol=1e-6)
    np.testing.assert_array_equal(found.class_id, label)


def test_hf_batches_equal_single_images(hf_dir, hf_raw):
    images = [_image(40, 60, s) for s in range(3)]  # one size: no padding differences inside a batch
    single = [hf_raw.detect(image, PROMPT, **LOW_THRESHOLDS)[0] for image in images]
    batched = build_detector("hf", model=str(hf_dir), nms=None, max_detections=None, batch_size=2)
    for one, many in zip(single, batched.detect(images, PROMPT, **LOW_THRESHOLDS)):
        _same(one, many, atol=1e-4)


def test_hf_forced_query_maps_to_its_class(hf_raw):
    (chunk,) = hf_raw.prompt_chunks(NAMES)
    tokens = hf_raw.tokenizer.convert_ids_to_tokens(list(chunk.input_ids))
    piece, dot = tokens.index("##hy"), tokens.index(".")
    image = _image(50, 70, 3)
    seen, box_hook = _capture_boxes(hf_raw.model)
    handle = hf_raw.model.class_embed[0].register_forward_hook(_ForceLogits([(3, piece), (7, dot), (7, 0)]))
    try:
        (found,) = hf_raw.detect(image, PROMPT, box_threshold=0.9, text_threshold=0.9)
    finally:
        handle.remove()
        box_hook.remove()
    assert found.class_id.tolist() == [2] and list(found.data["class_name"]) == ["shohy"]
    np.testing.assert_allclose(found.confidence, [torch.sigmoid(torch.tensor(20.0)).item()], atol=1e-6)
    expected = _pixel_box(seen["boxes"][0, 3], 50, 70)
    np.testing.assert_allclose(found.xyxy[0], expected, atol=1e-4)


def test_hf_long_prompt_chunks_merge_like_separate_runs(hf_raw):
    names = ["a cat", "a dog", "shohy", "red frisbee", "blue car", "green tree", "big house"]
    image = _image(40, 50, 4)
    hf_raw.max_text_len = 12  # force several chunks
    try:
        chunks = hf_raw.prompt_chunks(names)
        merged = hf_raw.detect(image, names, box_threshold=0.5, text_threshold=0.3)[0]
        parts = [(chunk, hf_raw.detect(image, [names[i] for i in chunk.class_ids], box_threshold=0.5,
                                       text_threshold=0.3)[0]) for chunk in chunks]
    finally:
        hf_raw.max_text_len = 256
    assert len(chunks) == 3
    rows = sorted((float(s), tuple(np.round(b, 4)), chunk.class_ids[c])
                  for chunk, part in parts for b, s, c in zip(part.xyxy, part.confidence, part.class_id))
    got = sorted((float(s), tuple(np.round(b, 4)), int(c))
                 for b, s, c in zip(merged.xyxy, merged.confidence, merged.class_id))
    assert got == rows and len(got) > 0
    assert {int(c) for c in merged.class_id} - {0, 1, 2, 3}  # classes from later chunks are found
    assert list(merged.data["class_name"]) == [names[i] for i in merged.class_id]


def _overlapping_boxes(module, args, output):
    """Forward hook: queries 0-9 predict one box and queries 10-12 the same box shifted (IoU 0.82)."""
    boxes = output["pred_boxes"].clone()
    boxes[:, :10] = torch.tensor([0.5, 0.5, 0.4, 0.4])
    boxes[:, 10:13] = torch.tensor([0.54, 0.5, 0.4, 0.4])
    output["pred_boxes"] = boxes
    return output


def test_hf_nms_and_max_detections_applied(hf_dir):
    from torchvision.ops import box_iou

    image = _image(50, 70, 5)
    results = {}
    for mode in (None, "class", "agnostic"):
        detector = build_detector("hf", model=str(hf_dir), nms=mode, nms_iou=0.5, max_detections=None)
        detector.model.register_forward_hook(_overlapping_boxes)
        results[mode] = detector.detect(image, PROMPT, **LOW_THRESHOLDS)[0]
        _same(detector.detect(image, PROMPT, **LOW_THRESHOLDS, max_detections=3)[0], results[mode][:3])
    everything = results[None]
    assert len(everything) == 30  # every query of the random model passes the low thresholds
    clustered = np.isclose(everything.xyxy, [21, 15, 49, 35], atol=1e-3).all(1) | \
        np.isclose(everything.xyxy, [23.8, 15, 51.8, 35], atol=1e-3).all(1)
    assert clustered.sum() == 13
    rest = len(everything) - 13
    assert len(results["agnostic"]) == rest + 1
    assert len(results["class"]) == rest + len(set(everything.class_id[clustered].tolist())) > rest + 1
    for mode in ("class", "agnostic"):
        kept = results[mode]
        iou = box_iou(torch.from_numpy(kept.xyxy), torch.from_numpy(kept.xyxy)).fill_diagonal_(0)
        if mode == "class":
            iou *= torch.from_numpy(kept.class_id[:, None] == kept.class_id[None, :])
        assert iou.max() <= 0.5


def test_hf_accepts_paths_and_empty_results(hf_raw, tmp_path):
    from PIL import Image

    image = _image(30, 30, 6)
    path = tmp_path / "x.png"
    Image.fromarray(image).save(path)
    _same(hf_raw.detect([str(path)], "dog")[0], hf_raw.detect(image, "dog")[0], atol=0)
    (none,) = hf_raw.detect(image, "dog", box_threshold=1.0)
    assert len(none) == 0 and none.xyxy.shape == (0, 4) and none.data["class_name"].shape == (0,)
    with pytest.raises(ValueError, match="box_threshold"):
        hf_raw.detect(image, "dog", box_threshold=1.5)


def test_hf_missing_model_errors_say_what_to_download(tmp_path):
    with pytest.raises(DetectorLoadError,
                       match=r"(?s)huggingface-cli download no-such-org/no-such-model.*--detector-model"):
        build_detector("hf", model="no-such-org/no-such-model")
    with pytest.raises(DetectorLoadError, match=r"no model folder at .*nothing-here(.|\n)*huggingface-cli download "
                                                r"IDEA-Research/grounding-dino-tiny"):
        build_detector("hf", model=str(tmp_path / "nothing-here"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DetectorLoadError, match=r"could not read the config of .*empty.*holds no config\.json"
                                                r"(.|\n)*--local-dir DIR"):
        build_detector("hf", model=str(tmp_path / "empty"))


def test_factory_rejects_wrong_arguments():
    with pytest.raises(ValueError, match="unknown detector backend 'yolo'"):
        build_detector("yolo")
    with pytest.raises(ValueError, match="checkpoint= and text_encoder= are for"):
        build_detector("hf", checkpoint="x.pth")


# ----------------------------------------------------------------------------- original backend


def test_original_detections_equal_direct_computation(original_raw):
    from groundingdino.util.misc import nested_tensor_from_tensor_list

    images = [_image(50, 70, 7), _image(50, 70, 8)]
    found = original_raw.detect(images, PROMPT, box_threshold=0.5, text_threshold=0.3)
    again = original_raw.detect(images, PROMPT, box_threshold=0.5, text_threshold=0.3)
    caption = build_caption(NAMES)
    ids = original_raw.model.tokenizer(caption)["input_ids"]
    with torch.no_grad():
        outputs = original_raw.model(nested_tensor_from_tensor_list([original_raw.preprocess(im) for im in images]),
                                     captions=[caption] * 2)
    for i, (detections, image) in enumerate(zip(found, images)):
        _check_structure(detections, image, NAMES)
        _same(detections, again[i], atol=0)
        xyxy, conf, label = _expected(outputs["pred_logits"][i], outputs["pred_boxes"][i], ids, 50, 70, 0.5, 0.3)
        assert 0 < len(conf) < 30
        np.testing.assert_allclose(detections.xyxy, xyxy, atol=1e-4)
        np.testing.assert_allclose(detections.confidence, conf, atol=1e-6)
        np.testing.assert_array_equal(detections.class_id, label)


def test_original_forced_query_maps_to_its_class(original_raw):
    (chunk,) = original_raw.prompt_chunks(NAMES)
    tokens = original_raw.tokenizer.convert_ids_to_tokens(list(chunk.input_ids))
    image = _image(40, 60, 9)
    seen, box_hook = _capture_boxes(original_raw.model)
    handle = original_raw.model.class_embed[0].register_forward_hook(
        _ForceLogits([(5, tokens.index("frisbee")), (9, tokens.index("."))]))
    try:
        (found,) = original_raw.detect(image, PROMPT, box_threshold=0.9, text_threshold=0.9)
    finally:
        handle.remove()
        box_hook.remove()
    assert found.class_id.tolist() == [3] and list(found.data["class_name"]) == ["red frisbee"]
    expected = _pixel_box(seen["boxes"][0, 5], 40, 60)
    np.testing.assert_allclose(found.xyxy[0], expected, atol=1e-4)


def test_original_missing_text_encoder_and_weights_errors(original_kwargs, tmp_path, monkeypatch):
    with pytest.raises(DetectorLoadError, match=r"no BERT folder(.|\n)*--text-encoder DIR"):
        build_detector("original", **{**original_kwargs, "text_encoder": str(tmp_path / "no-bert")})
    config = tmp_path / "cfg.py"
    config.write_text(open(original_kwargs["model"]).read() + "\ntext_encoder_type = 'no-such-bert'\n")
    with pytest.raises(DetectorLoadError, match=r"could not load the text encoder 'no-such-bert'(.|\n)*"
                                                r"huggingface-cli download bert-base-uncased"):
        build_detector("original", **{**original_kwargs, "model": str(config), "text_encoder": None})

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network is off in tests")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(CheckpointError, match=r"groundingdino_swint_ogc\.pth(.|\n)*put it at"):
        build_detector("original", **{**original_kwargs, "checkpoint": None})


def test_original_checkpoint_that_does_not_fit_is_named(original_kwargs, tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"model": {"not.a.key": torch.zeros(1)}}, bad)
    with pytest.raises(CheckpointError, match=r"bad\.pth does not fit GroundingDINO: missing keys"):
        build_detector("original", **{**original_kwargs, "checkpoint": str(bad)})


# ----------------------------------------------------------------------------- mmdet backend


def test_mmdet_equals_mmdet_own_inference(mmdet_kwargs):
    from mmdet.apis import inference_detector

    detector = build_detector("mmdet", **mmdet_kwargs, nms=None, max_detections=None)
    image = _image(50, 70, 10)
    (found,) = detector.detect(image, PROMPT, **LOW_THRESHOLDS)
    reference = inference_detector(detector.model, np.ascontiguousarray(image[..., ::-1]),  # mmdet reads BGR
                                   text_prompt=tuple(NAMES), custom_entities=True).pred_instances
    _check_structure(found, image, NAMES)
    assert len(found) == len(reference.scores) == 30
    np.testing.assert_allclose(found.xyxy, reference.bboxes.numpy(), atol=1e-5)
    np.testing.assert_allclose(found.confidence, reference.scores.numpy(), atol=1e-6)
    np.testing.assert_array_equal(found.class_id, reference.labels.numpy())


def test_mmdet_chunks_and_checkpoint_round_trip(mmdet_kwargs, tmp_path):
    names = ["a cat", "a dog", "shohy", "red frisbee", "blue car", "green tree", "big house"]
    images = [_image(50, 70, 11), _image(30, 40, 12)]
    torch.manual_seed(0)  # random weights: the same ones whatever ran before
    first = build_detector("mmdet", **mmdet_kwargs, nms=None, max_detections=None, image_size=48, max_size=72)
    first.max_text_len = 12  # three chunks
    assert len(first.prompt_chunks(names)) == 3
    found = first.detect(images, names, **LOW_THRESHOLDS)
    for detections, image in zip(found, images):
        _check_structure(detections, image, names)
    assert {int(c) for c in found[0].class_id} - {0, 1, 2}  # later chunks contribute
    checkpoint = tmp_path / "tiny_mmdet.pth"
    torch.save({"state_dict": first.model.state_dict(), "meta": {"epoch": 1}}, checkpoint)
    second = build_detector("mmdet", **mmdet_kwargs, checkpoint=str(checkpoint), nms=None, max_detections=None,
                            image_size=48, max_size=72)
    second.max_text_len = 12
    for a, b in zip(found, second.detect(images, names, **LOW_THRESHOLDS)):
        _same(a, b, atol=1e-5)


def test_mmdet_config_errors(mmdet_kwargs, tmp_path):
    with pytest.raises(ValueError, match="needs model="):
        build_detector("mmdet")
    with pytest.raises(DetectorLoadError, match="no mmdet config"):
        build_detector("mmdet", model=str(tmp_path / "none.py"))
    with pytest.raises(DetectorLoadError, match=r"(?s)no BERT folder.*--text-encoder DIR"):
        build_detector("mmdet", **mmdet_kwargs, text_encoder=str(tmp_path / "no-bert"))
    other = tmp_path / "retina.py"
    other.write_text("model = dict(type='RetinaNet')\n")
    with pytest.raises(DetectorLoadError, match="closed-set detector: pass its trained weights"):
        build_detector("mmdet", model=str(other))  # not Grounding DINO: the closed-set backend, which needs weights
