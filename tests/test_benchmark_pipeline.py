"""tools/benchmark_pipeline.py end to end on tiny models (a smoke run: no timing is asserted)."""
from __future__ import annotations

import json

from PIL import Image

from ._grounding_fixtures import make_tiny_hf_grounding_dino
from ._sam_fixtures import SMALL, synthetic_image
from .conftest import run_tool


def test_benchmark_pipeline_smoke_run(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(synthetic_image(90, 120)).save(images / "a.png")
    (images / "broken.jpg").write_bytes(b"not an image")  # reported and skipped, the run goes on
    detector = make_tiny_hf_grounding_dino(tmp_path)
    done = run_tool("benchmark_pipeline.py", images, "--paths", "baseline", "before", "exact", "balanced", "onnx",
                    "--detector-model", detector, "--sam-arch", SMALL["arch"], "--sam-image-size", SMALL["img_size"],
                    "--prompt", "a cat. a dog.", "--max-detections", 3, "--warmup", 0, "--work-dir", tmp_path / "work",
                    "--json", tmp_path / "bench.json")
    assert done.returncode == 0, done.stderr
    assert "| exact: exact: detector fp32, encoder fp32 |" in done.stdout and "vs before" in done.stdout
    report = json.loads((tmp_path / "bench.json").read_text())
    assert "cores" in report["cpu"]
    paths = report["paths"]
    assert list(paths) == ["baseline", "before", "exact", "balanced", "onnx"]
    for result in paths.values():
        assert result["images"] == 1 and result["failures"] == [{"path": str(images / "broken.jpg"),
                                                                 "stage": "loading"}]
        assert result["seconds_per_image"] > 0 and result["peak_rss_gb"] > 0
        assert set(result["stages"]) >= {"load", "det_forward", "encoder", "decoder", "post_write"}
    baseline = paths["baseline"]["agreement"]  # same float32 numerics, decoded box by box
    assert baseline["boxes_matched_iou90"] == 1.0 and baseline["logits_max_abs"] < 1e-3
    assert baseline["mask_iou_same_boxes"] > 0.99
    before = paths["before"]["agreement"]  # transformers' deformable attention: the same up to float32 rounding
    assert before["boxes_matched_iou90"] == 1.0 and before["logits_max_abs"] < 1e-3 and before["boxes_max_abs"] < 1e-4
    assert 0.0 <= paths["balanced"]["agreement"]["mask_iou_end_to_end"] <= 1.0
    assert paths["onnx"]["spec"]["detector_runtime"] == "onnxruntime"  # its agreement: tests/test_grounding_onnx.py
    assert list((tmp_path / "work" / "onnx").glob("grounding_dino_*/b1_*.onnx"))
