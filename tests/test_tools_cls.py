"""tools/test_cls.py, tools/get_flops.py, tools/benchmark_cls.py and the `info` command on tiny inputs."""
from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from repvit_plugins.classification import eval_transform
from repvit_plugins.cli import main as cli_main
from repvit_plugins.models import build_repvit

from .conftest import randomize_batchnorm

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def _tool(name: str):
    return runpy.run_path(str(TOOLS / name), run_name="tool")["main"]


@pytest.fixture
def image_folder(tmp_path):
    rng = np.random.default_rng(0)
    for c in ("a_cat", "b_dog", "c_fox"):
        (tmp_path / "val" / c).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 255, (40 + 7 * i, 60, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "val" / c / f"{i}.jpg")
    return tmp_path / "val"


def test_test_cls_matches_manual_top1(tmp_path, image_folder):
    model = randomize_batchnorm(build_repvit("m0_6", num_classes=3, distillation=True)).eval()
    torch.save({"model": model.state_dict()}, tmp_path / "ckpt.pth")
    transform, hits, total = eval_transform(), 0, 0
    for label, cls in enumerate(sorted(p.name for p in image_folder.iterdir())):
        for img in sorted((image_folder / cls).iterdir()):
            with torch.no_grad():
                pred = model(transform(Image.open(img).convert("RGB"))[None]).argmax(1).item()
            hits += pred == label
            total += 1
    args = [str(image_folder), "--arch", "m0_6", "--checkpoint", str(tmp_path / "ckpt.pth"),
            "--num-classes", "3", "--workers", "0", "--batch-size", "4", "--json"]
    result = _tool("test_cls.py")(args)
    assert result["images"] == total == 9
    assert result["top1"] == pytest.approx(100.0 * hits / total)
    assert result["top5"] == 100.0  # 3 classes: top-5 always hits
    assert _tool("test_cls.py")(args + ["--fuse"])["top1"] == pytest.approx(result["top1"])


def test_get_flops_prints_paper_macs(capsys):
    _tool("get_flops.py")(["--arch", "m0_9", "m2_3"])
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert float(rows["m0_9"][4]) == pytest.approx(0.8, abs=0.05)
    assert float(rows["m2_3"][4]) == pytest.approx(4.5, abs=0.05)
    assert float(rows["m2_3"][2]) == pytest.approx(22.9, abs=0.05)


def test_benchmark_cls_runs(capsys):
    _tool("benchmark_cls.py")(["--arch", "m0_6", "--batch-size", "1", "--size", "64", "--warmup", "1", "--iters", "1"])
    assert "m0_6" in capsys.readouterr().out


def test_info_command(capsys):
    assert cli_main(["info", "--arch", "m0_6"]) == 0
    assert "fusion check: ok" in capsys.readouterr().out


def test_download_list_and_offline_message(capsys, monkeypatch):
    from repvit_plugins import checkpoints

    assert cli_main(["download", "--list"]) == 0
    assert "repvit_sam" in capsys.readouterr().out
    offline = checkpoints.ZooEntry("repvit_sam.pt", "http://127.0.0.1:9/repvit_sam.pt", "repvit_sam")
    monkeypatch.setitem(checkpoints.ZOO, "repvit_sam", offline)
    assert cli_main(["download", "repvit_sam"]) == 1
    out = capsys.readouterr().out
    assert "put it at" in out and "repvit_sam.pt" in out


def test_import_loads_no_heavy_faces():
    import subprocess
    import sys

    code = ("import sys, repvit_plugins, repvit_plugins.models, repvit_plugins.checkpoints, repvit_plugins.cli;"
            "heavy=[m for m in ('mmdet','mmseg','mmengine','gradio','transformers') if m in sys.modules];"
            "print(heavy); sys.exit(bool(heavy))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
