"""One home for the pipeline's options: CLI flags, run settings, Gradio controls and the library read it."""
from __future__ import annotations

import argparse

import numpy as np
import pytest

from repvit_plugins.commands.arguments import add_option_arguments, options_from_args
from repvit_plugins.grounding import BACKENDS, parse_prompt
from repvit_plugins.grounding.detector import MAX_ASPECT_RATIO, MIN_SIDE, pad_for_detection
from repvit_plugins.jobs.settings import run_settings
from repvit_plugins.options import (
    DETECTOR_BACKENDS,
    MASK_SOURCES,
    NMS_MODES,
    ModelOptions,
    PipelineOptions,
    option_specs,
)
from repvit_plugins.sam import BACKENDS as SAM_BACKENDS


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_option_arguments(parser, PipelineOptions)
    add_option_arguments(parser, ModelOptions)
    return parser.parse_args(list(argv))


def test_flags_are_the_fields_with_their_defaults_and_choices():
    args = _parse()
    assert options_from_args(PipelineOptions, args) == PipelineOptions()
    assert options_from_args(ModelOptions, args) == ModelOptions()
    args = _parse("--box-threshold", "0.2", "--nms", "agnostic", "--multimask", "--max-detections", "7",
                  "--detector", "mmdet", "--sam-backend", "onnxruntime")
    options = options_from_args(PipelineOptions, args)
    assert (options.box_threshold, options.nms, options.multimask, options.max_detections) == (0.2, "agnostic", True, 7)
    assert options_from_args(ModelOptions, args).detector == "mmdet"
    with pytest.raises(SystemExit):
        _parse("--nms", "sometimes")


def test_choices_have_one_home():
    assert BACKENDS == DETECTOR_BACKENDS and SAM_BACKENDS == ("torch", "onnxruntime")
    specs = {s.name: s for s in option_specs(ModelOptions)}
    assert specs["detector"].choices == BACKENDS and specs["sam_backend"].choices == SAM_BACKENDS
    assert {s.name: s for s in option_specs(PipelineOptions)}["nms"].choices == NMS_MODES


@pytest.mark.parametrize("changes, message", [
    (dict(box_threshold=1.5), "box_threshold must be <= 1.0"), (dict(nms="box"), "nms must be one of"),
    (dict(nms_iou=0.0), "nms_iou must be > 0.0"), (dict(max_detections=0), "max_detections must be >= 1"),
    (dict(batch_size=0), "batch_size"), (dict(min_area=-1), "min_area"),
])
def test_values_are_checked_where_they_are_defined(changes, message):
    with pytest.raises(ValueError, match=message):
        PipelineOptions(**changes)
    with pytest.raises(ValueError, match=message):
        PipelineOptions().replace(**changes)


def test_unknown_option_names_are_refused():
    with pytest.raises(TypeError, match="unknown PipelineOptions field.*box_treshold"):
        PipelineOptions().replace(box_treshold=0.3)


def test_none_means_no_nms():
    assert PipelineOptions(nms=None).nms == "none"


def test_run_settings_hold_what_changes_results_only():
    settings = run_settings("a cat.", ModelOptions(), PipelineOptions())
    assert "batch_size" not in settings and "device" not in settings and "sam_backend" not in settings
    assert (settings["prompt"] == "a cat." and settings["box_threshold"] == 0.35
            and settings["sam_model"] == "repvit_sam" and settings["sam_checkpoint"] is None)
    assert ModelOptions(sam_arch="m0_9").resolved_sam_model == "repvit_sam_m0_9"
    assert ModelOptions(sam_model="mobile_sam", sam_arch="m0_9").resolved_sam_model == "mobile_sam"
    assert ModelOptions(sam_encoder_onnx="x.onnx").encoder_backend == "onnxruntime"


def test_comma_rule_lives_in_parse_prompt():
    assert parse_prompt("dog, cat") == ["dog", "cat"]
    assert parse_prompt("a dog, brown. a cat.") == ["a dog, brown", "a cat"]
    assert parse_prompt("a dog. a cat.") == ["a dog", "a cat"]
    assert parse_prompt(["dog, cat"]) == ["dog, cat"]  # a list is taken as it is


@pytest.mark.parametrize("shape", [(8, 4000), (4000, 8), (1, 1), (2, 300), (480, 640)])
def test_extreme_shapes_are_padded_for_the_detector(shape):
    image = np.full((*shape, 3), 7, np.uint8)
    padded = pad_for_detection(image)
    h, w = padded.shape[:2]
    assert min(h, w) >= MIN_SIDE and max(h, w) / min(h, w) <= MAX_ASPECT_RATIO + 1e-9
    np.testing.assert_array_equal(padded[:shape[0], :shape[1]], image)  # the image stays at the origin
    assert padded[shape[0]:].sum() == 0 and padded[:, shape[1]:].sum() == 0
    if shape == (480, 640):
        assert padded is image


def test_masks_is_a_flag_with_choices_and_a_run_setting():
    assert options_from_args(PipelineOptions, _parse()).masks == "sam"
    assert options_from_args(PipelineOptions, _parse("--masks", "detector")).masks == "detector"
    assert {s.name: s for s in option_specs(PipelineOptions)}["masks"].choices == MASK_SOURCES == ("sam", "detector")
    with pytest.raises(SystemExit):
        _parse("--masks", "both")
    # the student's masks and SAM's differ: a resumed run must not mix them
    assert run_settings("a cat.", ModelOptions(), PipelineOptions())["masks"] == "sam"
    assert run_settings("a cat.", ModelOptions(), PipelineOptions(masks="detector"))["masks"] == "detector"
