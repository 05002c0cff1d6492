"""tools/soak_labeler.py on a few images: it labels, samples RSS and reports growth (the numbers: docs/autolabel.md)."""
from __future__ import annotations

import json

import pytest

from ._grounding_fixtures import make_tiny_grounded_models
from ._mm_fixtures import load_tool


@pytest.mark.slow
def test_soak_reports_memory(tmp_path):
    models = make_tiny_grounded_models(tmp_path / "models")
    report = load_tool("soak_labeler").main([
        str(tmp_path / "photos"), "--images", "6", "--size", "64", "--interval", "0.05", "--out",
        str(tmp_path / "out"), "--prompt", "a square. a disc.", "--coco", "--detector-model", str(models["detector"]),
        "--sam-checkpoint", str(models["sam"]), "--sam-arch", "m0_6", "--sam-image-size", "256",
        "--box-threshold", "0", "--text-threshold", "0", "--max-detections", "2", "--no-progress"])
    assert report["exit_code"] == 0 and report["images"] == 6 and report["samples"] >= 1
    assert report["rss_mb_end"] > 0 and isinstance(report["growth_after_warmup"], float)
    assert json.loads((tmp_path / "out" / "memory.json").read_text())["images"] == 6
    assert len(json.loads((tmp_path / "out" / "annotations.json").read_text())["images"]) == 6
