"""tools/benchmark_backbones.py: a smoke run on two tiny models (no timing asserted) and the contender table."""
from __future__ import annotations

import json

import pytest

from repvit_plugins.bench.backbone_benchmark import CONTENDERS, contender

from ._mm_fixtures import load_tool


def test_contenders_cover_the_family_and_the_papers_backbones():
    names = {c.name for c in CONTENDERS}
    assert {f"RepViT-M{v}" for v in ("0.6", "0.9", "1.0", "1.1", "1.5", "2.3", "1", "2", "3")} <= names
    assert {"EfficientViT-M5", "EfficientViT-B1", "EfficientFormer-L1", "EfficientFormerV2-S2", "MobileViTv2-1.0",
            "EfficientNetV2-B3", "TinyViT-11M"} <= names
    assert all(c.top1 and c.source for c in CONTENDERS)
    assert contender("M1.1") is contender("m1_1") is contender("RepViT-M1.1")
    assert contender("timm:efficientvit_m0").levels == 3
    with pytest.raises(ValueError, match="timm:NAME"):
        contender("no-such-net")


@pytest.mark.slow
def test_smoke_run_writes_table_json_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    results = load_tool("benchmark_backbones").main(
        ["--models", "M0.6", "timm:efficientvit_m0", "--size", "64", "--det-size", "64", "96", "--warmup", "0",
         "--iters", "1", "--out", str(tmp_path)])
    assert [r["name"] for r in results] == ["RepViT-M0.6", "efficientvit_m0"]
    assert all(r["params_m"] > 1 and r["macs_g"] > 0 and r["det_macs_g"] > r["macs_g"] for r in results)
    assert all(r["eager_ms"] > 0 and (r["onnx_ms"] or 0) > 0 for r in results)  # both export to ONNX
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["results"] == results and "torch threads" in saved["machine"]
    table = (tmp_path / "results.md").read_text()
    assert "| RepViT-M0.6 | 2.47 M |" in table and "74.1" in table
    png = (tmp_path / "latency_top1.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
