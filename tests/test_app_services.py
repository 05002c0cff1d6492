"""The demo's logic without a browser: downscaling, click state, missing weights."""
from __future__ import annotations

import numpy as np
import pytest

from repvit_plugins.app import ClickState, DemoError, DemoModels, prepare_image, weights_status
from repvit_plugins.app.services import run_click_mode, run_text_mode
from repvit_plugins.options import ModelOptions, PipelineOptions


def test_large_images_are_downscaled_with_a_note():
    prepared = prepare_image(np.zeros((300, 900, 3), np.uint8), max_side=450)
    assert prepared.image.shape == (150, 450, 3) and prepared.scale == pytest.approx(0.5)
    assert "downscaled" in prepared.note
    assert prepare_image(np.zeros((30, 40, 3), np.uint8), max_side=450).note == ""


def test_missing_upload_and_non_image_are_clear(tmp_path):
    with pytest.raises(DemoError, match="Upload an image"):
        prepare_image(None, 512)
    bad = tmp_path / "x.png"
    bad.write_text("nope")
    with pytest.raises(DemoError, match="could not be read as an image"):
        prepare_image(str(bad), 512)


def test_click_state_builds_a_box_from_two_corners():
    state = ClickState()
    state.add(10, 5, "positive point")
    state.add(40, 30, "box corner")
    assert state.box is None and state.box_corner == [40, 30]
    state.add(20, 50, "box corner")
    state.add(1, 2, "negative point")
    assert state.box == [20, 30, 40, 50] and state.labels == [1, 0]


def test_missing_weights_become_a_message_not_a_crash():
    from repvit_plugins.app import default_models

    options = ModelOptions(sam_checkpoint="repvit_sam", detector_model="/nonexistent/model")
    status = weights_status(options)
    assert "repvit_sam.pt" in status and "/nonexistent/model" in status
    models = default_models(options)
    prepared = prepare_image(np.zeros((32, 32, 3), np.uint8), 64)
    with pytest.raises(DemoError, match="could not be loaded"):
        run_text_mode(models, prepared, "a cat.", PipelineOptions(box_threshold=0.3))
    state = ClickState()
    state.add(3, 3, "positive point")
    with pytest.raises(DemoError, match="repvit_sam.pt"):
        run_click_mode(DemoModels(segmenter_factory=models.segmenter_factory), prepared, state)


def test_empty_prompt_is_explained():
    models = DemoModels(detector=object(), segmenter=object())
    with pytest.raises(DemoError, match="Type what to find"):
        run_text_mode(models, prepare_image(np.zeros((8, 8, 3), np.uint8), 64), "  ")


def test_the_page_model_choice_builds_each_sam_once():
    built = []

    def factory(name):
        built.append(name)
        return f"segmenter of {name}"

    models = DemoModels(segmenter="own", sam_model="repvit_sam", sam_factory=factory)
    assert models.get_segmenter() == models.get_segmenter("repvit_sam") == "own"
    assert models.get_segmenter("mobile_sam") == models.get_segmenter("mobile_sam") == "segmenter of mobile_sam"
    assert built == ["mobile_sam"]
    with pytest.raises(DemoError, match="runs one SAM model"):
        DemoModels(segmenter="own", sam_model="repvit_sam").get_segmenter("sam_vit_b")


def test_demo_offers_the_zoo_models_with_official_weights():
    from repvit_plugins.commands.demo import _sam_choices

    choices = _sam_choices(ModelOptions(sam_model="mobile_sam"))
    assert choices[0] == "mobile_sam" and "repvit_sam" in choices and "sam_vit_b" in choices
    assert "repvit_sam_m0_9" not in choices  # students have no official weights
