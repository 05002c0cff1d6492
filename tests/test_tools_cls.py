"""Evaluation, complexity and throughput (library and tools/test_cls.py, get_flops.py, benchmark_cls.py), `info`."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from repvit_plugins.bench.classification import eval_transform, evaluate_folder, throughput
from repvit_plugins.bench.complexity import repvit_complexity
from repvit_plugins.cli import main as cli_main
from repvit_plugins.models import build_repvit

from .conftest import randomize_batchnorm, run_tool


@pytest.fixture
def image_folder(tmp_path):
    rng = np.random.default_rng(0)
    for c in ("a_cat", "b_dog", "c_fox"):
        (tmp_path / "val" / c).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 255, (40 + 7 * i, 60, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "val" / c / f"{i}.jpg")
    return tmp_path / "val"


def test_evaluate_folder_and_test_cls_match_manual_top1(tmp_path, image_folder):
    model = randomize_batchnorm(build_repvit("m0_6", num_classes=3, distillation=True)).eval()
    torch.save({"model": model.state_dict()}, tmp_path / "ckpt.pth")
    transform, hits, total = eval_transform(), 0, 0
    for label, cls in enumerate(sorted(p.name for p in image_folder.iterdir())):
        for img in sorted((image_folder / cls).iterdir()):
            with torch.no_grad():
                pred = model(transform(Image.open(img).convert("RGB"))[None]).argmax(1).item()
            hits += pred == label
            total += 1
    checkpoint = tmp_path / "ckpt.pth"
    result = evaluate_folder(image_folder, "m0_6", checkpoint, num_classes=3, batch_size=4, workers=0)
    assert result["images"] == total == 9
    assert result["top1"] == pytest.approx(100.0 * hits / total)
    assert result["top5"] == 100.0  # 3 classes: top-5 always hits
    fused = evaluate_folder(image_folder, "m0_6", checkpoint, num_classes=3, batch_size=4, workers=0, fuse=True)
    assert fused["top1"] == pytest.approx(result["top1"])
    done = run_tool("test_cls.py", image_folder, "--arch", "m0_6", "--checkpoint", checkpoint, "--num-classes", "3",
                    "--workers", "0", "--batch-size", "4", "--fuse", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == pytest.approx(fused)


def test_complexity_matches_the_paper():
    m0_9, m2_3 = repvit_complexity("m0_9"), repvit_complexity("m2_3")
    assert m0_9["fused_macs"] / 1e9 == pytest.approx(0.8, abs=0.05)
    assert m2_3["fused_macs"] / 1e9 == pytest.approx(4.5, abs=0.05)
    assert m2_3["fused_params"] / 1e6 == pytest.approx(22.9, abs=0.05)
    assert m2_3["params"] > m2_3["fused_params"] and m2_3["macs"] > m2_3["fused_macs"]


def test_throughput_counts_images_per_second():
    assert throughput(build_repvit("m0_6").eval(), torch.randn(2, 3, 64, 64), warmup=1, iters=1) > 0


@pytest.mark.parametrize("tool", ["get_flops.py", "benchmark_cls.py"])
def test_measuring_tools_print_a_row_per_arch(tool):
    extra = ["--batch-size", "1", "--warmup", "1", "--iters", "1"] if tool == "benchmark_cls.py" else []
    done = run_tool(tool, "--arch", "m0_6", "--size", "64", *extra)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].split()[0] == "m0_6"


def test_info_command(capsys):
    assert cli_main(["info", "--arch", "m0_6"]) == 0
    assert "fusion check: ok" in capsys.readouterr().out


def test_download_list_and_offline_message(capsys, monkeypatch):
    from repvit_plugins.weights import zoo

    assert cli_main(["download", "--list"]) == 0
    assert "repvit_sam" in capsys.readouterr().out
    offline = zoo.ZooEntry("repvit_sam.pt", "http://127.0.0.1:9/repvit_sam.pt", "repvit_sam")
    monkeypatch.setitem(zoo.ZOO, "repvit_sam", offline)
    assert cli_main(["download", "repvit_sam"]) == 1
    out = capsys.readouterr().out
    assert "put it at" in out and "repvit_sam.pt" in out


def test_import_loads_no_heavy_faces():
    import subprocess
    import sys

    code = ("import sys, repvit_plugins, repvit_plugins.models, repvit_plugins.weights.zoo, "
            "repvit_plugins.weights.checkpoint_io, repvit_plugins.cli;"
            "heavy=[m for m in ('mmdet','mmseg','mmengine','gradio','transformers') if m in sys.modules];"
            "print(heavy); sys.exit(bool(heavy))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
