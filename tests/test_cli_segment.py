"""`repvit-plugins segment` on real photographs and broken files: outputs, summary, kill -9 and resume."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from repvit_plugins.cli import main as cli_main
from repvit_plugins.models import build_repvit_sam

from ._grounding_fixtures import make_tiny_hf_grounding_dino

pytestmark = pytest.mark.slow
PHOTOS = Path(__file__).resolve().parents[1] / "demo" / "images"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    sam_path = tmp / "tiny_repvit_sam.pt"
    torch.save(build_repvit_sam(arch="m0_6", img_size=256).state_dict(), sam_path)
    return {"detector": make_tiny_hf_grounding_dino(tmp / "gdino"), "sam": sam_path}


def _args(inputs, out, models, *extra) -> list[str]:
    return ["segment", *map(str, inputs), "--prompt", "a cat. a dog. a cup.", "--out", str(out),
            "--detector-model", str(models["detector"]), "--sam-checkpoint", str(models["sam"]),
            "--sam-arch", "m0_6", "--sam-image-size", "256", "--box-threshold", "0.1", "--text-threshold", "0.1",
            "--max-detections", "4", "--no-progress", *extra]


@pytest.fixture
def photo_folder(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in PHOTOS.glob("*.jpg"):
        shutil.copy(photo, folder / photo.name)
    (folder / "broken.jpg").write_bytes((PHOTOS / "coffee.jpg").read_bytes()[:2000])  # truncated JPEG
    (folder / "notes.png").write_text("not an image at all")
    return folder


def test_folder_with_broken_files(photo_folder, models, tmp_path, capsys):
    from pycocotools.coco import COCO

    out = tmp_path / "out"
    code = cli_main(_args([photo_folder], out, models, "--coco", "--png-masks", "--yolo"))
    printed = capsys.readouterr().out
    assert code == 1  # the batch completed, but two files failed
    assert "images: 5 (3 processed now, 0 already done, 2 failed)" in printed
    assert "broken.jpg" in printed and "notes.png" in printed
    coco = COCO(str(out / "annotations.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["a cat", "a dog", "a cup"]
    assert len(coco.getImgIds()) == 3 and len(coco.getAnnIds()) > 0
    for ann in coco.loadAnns(coco.getAnnIds()):
        info = coco.loadImgs(ann["image_id"])[0]
        assert coco.annToMask(ann).shape == (info["height"], info["width"])
    assert len(list((out / "annotated").glob("*.jpg"))) == 3
    for label_file in (out / "labels").glob("*.txt"):
        for line in filter(None, label_file.read_text().splitlines()):
            values = line.split()
            assert 0 <= int(values[0]) < 3 and len(values[1:]) % 2 == 0
            assert all(0.0 <= float(v) <= 1.0 for v in values[1:])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processed"] == 3 and summary["failed"] == 2
    # a rerun does nothing twice
    assert cli_main(_args([photo_folder], out, models, "--coco", "--png-masks", "--yolo")) == 1
    assert "0 processed now, 3 already done, 2 failed" in capsys.readouterr().out


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _bad_and_odd_files(folder: Path) -> dict[str, str]:
    """Odd images that must work and bad files that must fail; returns {bad file name: expected reason}."""
    import struct

    from PIL import Image

    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 255, (8, 4000, 3), dtype=np.uint8)).save(folder / "thin.png")
    Image.fromarray(rng.integers(0, 255, (4000, 8, 3), dtype=np.uint8)).save(folder / "tall.png")
    Image.fromarray(rng.integers(0, 255, (1, 1, 3), dtype=np.uint8)).save(folder / "tiny.png")
    (folder / "empty.jpg").write_bytes(b"")
    header = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 64, 64, 8, 2, 0, 0, 0))
    (folder / "header_only.png").write_bytes(header)
    bomb = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0))
    (folder / "bomb.png").write_bytes(bomb + _png_chunk(b"IDAT", b"") + _png_chunk(b"IEND", b""))
    return {"broken.jpg": "truncated or corrupt", "notes.png": "not an image file", "empty.jpg": "the file is empty",
            "header_only.png": "starts like a PNG file but is truncated or corrupt", "bomb.png": "decompression bombs"}


def test_bad_files_fail_alone_and_odd_shapes_work(photo_folder, models, tmp_path, capsys):
    bad = _bad_and_odd_files(photo_folder)
    out = tmp_path / "out"
    assert cli_main(_args([photo_folder], out, models, "--coco", "--box-threshold", "0.02")) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert "images: 11 (6 processed now, 0 already done, 5 failed)" in captured.out
    summary = json.loads((out / "summary.json").read_text())
    failures = {Path(f["path"]).name: f for f in summary["failures"]}
    assert set(failures) == set(bad)
    for name, reason in bad.items():
        assert reason in failures[name]["error"] and failures[name]["stage"] == "loading"
        line = next(line for line in captured.out.splitlines() if line.startswith("failed:") and name in line)
        assert line.count(name) == 1  # the path is named once, not repeated by the reason
    from pycocotools.coco import COCO

    coco = COCO(str(out / "annotations.json"))
    sizes = {Path(i["file_name"]).name: (i["height"], i["width"]) for i in coco.loadImgs(coco.getImgIds())}
    assert sizes["thin.png"] == (8, 4000) and sizes["tall.png"] == (4000, 8) and sizes["tiny.png"] == (1, 1)
    for ann in coco.loadAnns(coco.getAnnIds()):
        info = coco.loadImgs(ann["image_id"])[0]
        x, y, w, h = ann["bbox"]
        assert 0 <= x and x + w <= info["width"] + 1e-3 and 0 <= y and y + h <= info["height"] + 1e-3


class _FailsOnMarked:
    """A real detector or segmenter that raises for images whose first pixel is MARK (a fault in one image)."""

    MARK = (1, 2, 3)

    def __init__(self, inner, method: str):
        self.inner, self.method = inner, method

    def __getattr__(self, name):
        attribute = getattr(self.inner, name)
        if name != self.method:
            return attribute

        def call(images, *args, **kwargs):
            batch = images if isinstance(images, list) else [images]
            if any(tuple(image[0, 0]) == self.MARK for image in batch):
                raise RuntimeError(f"injected {self.method} fault")
            return attribute(images, *args, **kwargs)

        return call


def test_a_fault_in_the_detector_or_segmenter_fails_only_its_image(models, tmp_path):
    from repvit_plugins.grounding import GroundedSAM, build_detector
    from repvit_plugins.jobs.labeler import BatchLabeler, Outputs
    from repvit_plugins.sam import SamSegmenter

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    from PIL import Image

    for i in range(6):
        pixels = rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)
        if i in (1, 4):
            pixels[0, 0] = _FailsOnMarked.MARK
        Image.fromarray(pixels).save(folder / f"img{i}.png")
    detector = build_detector("hf", model=str(models["detector"]))
    segmenter = SamSegmenter(checkpoint=models["sam"], arch="m0_6", img_size=256)
    for faulty, stage in ((_FailsOnMarked(detector, "detect"), "detection"),
                          (_FailsOnMarked(segmenter, "set_image"), "segmentation")):
        pipeline = (GroundedSAM(faulty, segmenter, batch_size=3, box_threshold=0.05, text_threshold=0.05)
                    if stage == "detection" else
                    GroundedSAM(detector, faulty, batch_size=3, box_threshold=0.05, text_threshold=0.05))
        out = tmp_path / stage
        summary = BatchLabeler(pipeline, out, "a cat.", ["a cat"], Outputs(coco=True), {}).run(
            sorted(folder.glob("*.png")), progress=False)
        assert summary.processed == 4 and summary.failed == 2
        assert {Path(f["path"]).name for f in summary.failures} == {"img1.png", "img4.png"}
        assert all(f["stage"] == stage and "injected" in f["error"] for f in summary.failures)
        assert len(list((out / "records").glob("*.json"))) == 4
        assert json.loads((out / "summary.json").read_text())["failures"] == summary.failures


def test_segment_with_another_sam_of_the_zoo(models, tmp_path):
    from repvit_plugins.models import build_sam

    torch.save(build_sam("mobile_sam").state_dict(), tmp_path / "mobile_sam.pt")
    args = [a for a in _args([PHOTOS / "chelsea.jpg"], tmp_path / "out", models, "--coco")
            if a not in ("--sam-arch", "m0_6", "--sam-image-size", "256")]
    args[args.index("--sam-checkpoint") + 1] = str(tmp_path / "mobile_sam.pt")
    assert cli_main([*args, "--sam-model", "mobile_sam"]) == 0
    settings = json.loads((tmp_path / "out" / "run.json").read_text())
    assert settings["sam_model"] == "mobile_sam"
    coco = json.loads((tmp_path / "out" / "annotations.json").read_text())
    assert coco["annotations"] and all(a["segmentation"]["counts"] for a in coco["annotations"])


def test_rerun_with_other_settings_is_refused(photo_folder, models, tmp_path, capsys):
    out = tmp_path / "out"
    cli_main(_args([photo_folder / "chelsea.jpg"], out, models))
    assert cli_main(_args([photo_folder / "chelsea.jpg"], out, models, "--multimask")) == 2
    assert "other settings" in capsys.readouterr().err


def test_overwrite_redoes_the_run_and_never_touches_the_inputs(photo_folder, models, tmp_path):
    """--overwrite rewrites run.json in --out; the input images stay byte for byte as they were."""
    out = tmp_path / "out"
    photo = photo_folder / "chelsea.jpg"
    before = photo.read_bytes()
    assert cli_main(_args([photo], out, models)) == 0
    assert cli_main(_args([photo], out, models, "--multimask", "--overwrite")) == 0
    assert photo.read_bytes() == before
    assert json.loads((out / "run.json").read_text())["multimask"] is True


def test_int8_onnx_encoder_gives_nearly_the_same_masks(models, tmp_path):
    """export_onnx.py --quantize, then segment with --sam-encoder-onnx: the float run's instances, close masks."""
    from pycocotools.coco import COCO

    from .conftest import run_tool

    pytest.importorskip("onnxruntime")
    done = run_tool("export_onnx.py", "--checkpoint", models["sam"], "--arch", "m0_6", "--img-size", 256,
                    "--encoder-only", "--quantize", "--output-dir", tmp_path / "onnx", "--name", "tiny")
    assert done.returncode == 0, done.stderr
    photo = PHOTOS / "chelsea.jpg"
    assert cli_main(_args([photo], tmp_path / "float", models, "--coco")) == 0
    assert cli_main(_args([photo], tmp_path / "int8", models, "--coco", "--sam-encoder-onnx",
                          str(tmp_path / "onnx" / "tiny_encoder.int8.onnx"))) == 0
    runs = [COCO(str(tmp_path / run / "annotations.json")) for run in ("float", "int8")]
    float_anns, int8_anns = (coco.loadAnns(coco.getAnnIds()) for coco in runs)
    assert len(float_anns) == len(int8_anns) > 0  # same detector boxes: one mask each
    for a, b in zip(float_anns, int8_anns):
        ma, mb = runs[0].annToMask(a).astype(bool), runs[1].annToMask(b).astype(bool)
        assert a["bbox"] == b["bbox"] and (ma & mb).sum() / max((ma | mb).sum(), 1) > 0.8
    assert json.loads((tmp_path / "int8" / "run.json").read_text())["sam_encoder_onnx"].endswith("int8.onnx")


def test_missing_weights_say_where_to_put_them(photo_folder, tmp_path, capsys):
    code = cli_main(["segment", str(photo_folder / "chelsea.jpg"), "--prompt", "a cat.", "--out", str(tmp_path / "o"),
                     "--detector-model", str(tmp_path / "no_such_model"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "no_such_model" in err


def test_kill_and_resume_loses_nothing_and_duplicates_nothing(models, tmp_path):
    from pycocotools.coco import COCO

    folder = tmp_path / "many"
    folder.mkdir()
    rng = np.random.default_rng(0)
    from PIL import Image

    for i in range(10):
        Image.fromarray(rng.integers(0, 255, (80 + 4 * i, 96, 3), dtype=np.uint8)).save(folder / f"img{i:02d}.png")
    out = tmp_path / "out"
    args = [sys.executable, "-m", "repvit_plugins", *_args([folder], out, models, "--coco", "--batch-size", "1")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    records = out / "records"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if records.is_dir() and len(list(records.glob("*.json"))) >= 3:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    done_before = len(list(records.glob("*.json")))
    assert 3 <= done_before < 10
    resumed = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{10 - done_before} processed now, {done_before} already done, 0 failed" in resumed.stdout
    assert len(list(records.glob("*.json"))) == 10
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    coco = COCO(str(out / "annotations.json"))
    names = [img["file_name"] for img in coco.loadImgs(coco.getImgIds())]
    assert sorted(names) == sorted(str(p) for p in folder.glob("*.png"))  # every image once
    ids = [a["id"] for a in coco.loadAnns(coco.getAnnIds())]
    assert len(ids) == len(set(ids))
