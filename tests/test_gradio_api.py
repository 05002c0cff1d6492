"""The Gradio page's API as ``gradio_client`` lists it: named endpoints with named parameters, no duplicates."""
from __future__ import annotations

import pytest

pytest.importorskip("gradio")

from repvit_plugins.app import DemoModels, build_app  # noqa: E402
from repvit_plugins.app.ui import API_NAMES, TEXT_CONTROLS  # noqa: E402
from repvit_plugins.options import PipelineOptions  # noqa: E402

EXPECTED = {
    "/text_mode": ["sam_model", "speed", "image", "prompt", *TEXT_CONTROLS],
    "/click": ["sam_model", "image", "mode"],
    "/clear_clicks": [],
    "/everything_mode": ["sam_model", "image", "points_per_side", "iou_thresh", "stability_thresh"],
}


@pytest.mark.parametrize("choices", [{}, {"sam_models": ("repvit_sam", "efficientvit_sam_l0"),
                                          "speeds": ("balanced", "realtime")}])
def test_every_endpoint_and_parameter_has_a_name(choices):
    page = build_app(DemoModels(), **choices)  # models are built on first use: none here
    info = page.get_api_info()
    endpoints = {name: [p["parameter_name"] for p in endpoint["parameters"]]
                 for name, endpoint in info["named_endpoints"].items()}
    assert endpoints == EXPECTED
    assert sorted(name.lstrip("/") for name in endpoints) == sorted(API_NAMES)
    assert not info.get("unnamed_endpoints")
    text_defaults = {p["parameter_name"]: p["parameter_default"] for p in info["named_endpoints"]["/text_mode"]
                     ["parameters"] if p["parameter_name"] in TEXT_CONTROLS}
    defaults = PipelineOptions()
    assert text_defaults == {name: getattr(defaults, name) for name in TEXT_CONTROLS}  # 0.35, 0.25, 'class', 100
