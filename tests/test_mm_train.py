"""tools/train.py, tools/test.py, dist_train.sh and the image demo on tiny synthetic datasets (CPU).

The tiny configs train RepViT-M0.6 from random weights until it overfits four
128x128 images, then evaluate with mmdet's CocoMetric / mmseg's IoUMetric.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("mmdet")
pytest.importorskip("mmseg")

from ._mm_fixtures import ROOT, load_tool, write_ade, write_coco  # noqa: E402

TINY_DET = str(ROOT / "configs/tests/mask-rcnn_repvit-m0.6_fpn_tiny-synthetic.py")
TINY_SEG = str(ROOT / "configs/tests/fpn_repvit-m0.6_tiny-synthetic.py")
TINY_TIMM = {  # a timm backbone (TimmBackbone, EfficientViT-M0 at strides 16/32/64) in the same tiny recipes
    "det": str(ROOT / "configs/tests/mask-rcnn_efficientvit-m0_fpn_tiny-synthetic.py"),
    "seg": str(ROOT / "configs/tests/fpn_efficientvit-m0_tiny-synthetic.py"),
}



@pytest.fixture(scope="module", autouse=True)
def tiny_data(tmp_path_factory):
    """Write the synthetic datasets once; the tiny configs find them through environment variables."""
    root = tmp_path_factory.mktemp("tiny_data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REPVIT_TINY_COCO", f"{write_coco(root / 'coco')}/")
        mp.setenv("REPVIT_TINY_ADE", f"{write_ade(root / 'ade')}/")
        yield root


def _train(config: str, work_dir: Path, *extra: str):
    return load_tool("train").main([config, "--work-dir", str(work_dir), *extra])


def _test(config: str, checkpoint: Path, work_dir: Path, *extra: str) -> dict:
    return load_tool("test").main([config, str(checkpoint), "--work-dir", str(work_dir), *extra])


def _scalars(work_dir: Path) -> list[dict]:
    (log,) = work_dir.glob("*/vis_data/scalars.json")
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.fixture(scope="module")
def trained_detector(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp("det")
    runner = _train(TINY_DET, work_dir)
    return work_dir, runner.message_hub.get_scalar("val/coco/bbox_mAP").current(), \
        runner.message_hub.get_scalar("val/coco/segm_mAP").current()


@pytest.fixture(scope="module")
def trained_segmentor(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp("seg")
    runner = _train(TINY_SEG, work_dir)
    return work_dir, runner.message_hub.get_scalar("val/mIoU").current()


def _spy_on_fusion(monkeypatch) -> list:
    """Make mmcv's generic conv-bn fusion fail loudly and count RepViT's own re-parameterizations."""
    import mmcv.cnn

    import repvit_plugins.mm.hooks as hooks

    def forbidden(*_args, **_kwargs):
        raise AssertionError("mmcv's fuse_conv_bn must never run on RepViT")

    monkeypatch.setattr(mmcv.cnn, "fuse_conv_bn", forbidden)
    monkeypatch.setattr("mmcv.cnn.utils.fuse_conv_bn.fuse_conv_bn", forbidden, raising=False)
    calls, real = [], hooks.reparameterize

    def spy(model):
        calls.append(real(model))
        return calls[-1]

    monkeypatch.setattr(hooks, "reparameterize", spy)
    return calls


@pytest.mark.slow
def test_mask_rcnn_overfits_the_tiny_dataset(trained_detector):
    work_dir, bbox_map, segm_map = trained_detector
    assert bbox_map >= 0.5 and segm_map >= 0.5, (bbox_map, segm_map)
    losses = [row["loss"] for row in _scalars(work_dir) if "loss" in row]
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.slow
def test_mask_rcnn_test_tool_and_fuse_give_the_same_metric(trained_detector, tmp_path, monkeypatch):
    work_dir, bbox_map, segm_map = trained_detector
    checkpoint = work_dir / "iter_40.pth"
    plain = _test(TINY_DET, checkpoint, tmp_path / "plain", "--show-dir", str(tmp_path / "show"))
    assert len(list((tmp_path / "show").glob("*.jpg"))) == 4  # every test image, drawn
    assert plain["coco/bbox_mAP"] == pytest.approx(bbox_map) and plain["coco/segm_mAP"] == pytest.approx(segm_map)
    calls = _spy_on_fusion(monkeypatch)
    fused = _test(TINY_DET, checkpoint, tmp_path / "fused", "--fuse")
    assert len(calls) == 1 and not any(isinstance(m, torch.nn.BatchNorm2d) for m in calls[0].backbone.modules())
    for key in ("coco/bbox_mAP", "coco/segm_mAP", "coco/bbox_mAP_50", "coco/segm_mAP_75"):
        assert fused[key] == pytest.approx(plain[key], abs=0.01), key


@pytest.mark.slow
def test_semantic_fpn_overfits_the_tiny_dataset(trained_segmentor):
    _, miou = trained_segmentor
    assert miou >= 50.0  # mmseg reports percent


@pytest.mark.slow
def test_semantic_fpn_test_tool_and_fuse_give_the_same_metric(trained_segmentor, tmp_path, monkeypatch):
    work_dir, miou = trained_segmentor
    checkpoint = work_dir / "iter_30.pth"
    plain = _test(TINY_SEG, checkpoint, tmp_path / "plain")
    assert plain["mIoU"] == pytest.approx(miou)
    calls = _spy_on_fusion(monkeypatch)
    fused = _test(TINY_SEG, checkpoint, tmp_path / "fused", "--fuse", "--out", str(tmp_path / "preds.pkl"))
    assert len(calls) == 1 and fused["mIoU"] == pytest.approx(plain["mIoU"], abs=0.05)
    assert (tmp_path / "preds.pkl").stat().st_size > 0


@pytest.mark.slow
def test_resume_continues_with_identical_losses(tmp_path):
    """6 iterations straight == 3 iterations, a checkpoint, then --resume for 3 more (losses and lr).

    mmengine saves no random-generator states, so the run must not draw random numbers while training:
    the tiny pipeline has no random augmentation, and dropout is switched off here.
    """
    options = ["--cfg-options", "train_cfg.max_iters=6", "default_hooks.checkpoint.interval=3",
               "default_hooks.logger.interval=1", "log_processor.window_size=1",
               "val_cfg=None", "val_dataloader=None", "val_evaluator=None", "model.decode_head.dropout_ratio=0",
               "param_scheduler.0.end=6", "param_scheduler.0.milestones=[4]"]  # the lr drops after the resume
    _train(TINY_SEG, tmp_path / "straight", *options)
    _train(TINY_SEG, tmp_path / "resumed", "--resume", str(tmp_path / "straight/iter_3.pth"), *options)
    straight = {row["step"]: row for row in _scalars(tmp_path / "straight")}
    resumed = {row["step"]: row for row in _scalars(tmp_path / "resumed")}
    assert sorted(resumed) == [4, 5, 6]  # it continued, it did not start again
    for step in (4, 5, 6):
        assert resumed[step]["loss"] == straight[step]["loss"] and resumed[step]["lr"] == straight[step]["lr"]
    assert straight[4]["loss"] != straight[6]["loss"] and straight[4]["lr"] > straight[6]["lr"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_process_ddp_on_cpu(tmp_path):
    work_dir = tmp_path / "ddp"
    env = {**os.environ, "PYTHON": sys.executable, "PORT": str(_free_port()), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        ["bash", str(ROOT / "tools/dist_train.sh"), TINY_SEG, "2", "--work-dir", str(work_dir),
         "--cfg-options", "train_cfg.max_iters=4", "train_cfg.val_interval=4", "default_hooks.checkpoint.interval=4"],
        env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (work_dir / "iter_4.pth").is_file()
    (log,) = work_dir.glob("*/*.log")
    text = log.read_text()
    assert "Distributed training: True" in text and "GPU number: 2" in text  # mmengine's name for world size
    assert "Iter(val) [2/2]" in text and "mIoU" in text  # each process evaluated half of the four images


def _run_as_one_process_worker(script: str) -> subprocess.CompletedProcess:
    """``python -c script`` with torchrun's env:// variables for a world of one."""
    env = {**os.environ, "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(_free_port()), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)


def test_finished_distributed_worker_flushes_and_exits_cleanly(tmp_path):
    """finish_distributed_worker(): group destroyed, logs and stdout flushed, exit 0, no interpreter teardown.

    A one-process gloo group (torchrun's env:// variables) runs DDP backward passes and a barrier, the
    collectives whose late release by gloo's threads used to abort workers at exit.
    """
    script = f"""
import logging, sys, torch, torch.distributed as dist
from repvit_plugins.mm.runner import finish_distributed_worker
finish_distributed_worker()  # no group yet: returns
handler = logging.FileHandler({str(tmp_path / "run.log")!r})
logging.getLogger("run").addHandler(handler)
dist.init_process_group("gloo")
model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 4))
for _ in range(2):
    model(torch.randn(2, 4)).sum().backward()
dist.barrier()
logging.getLogger("run").warning("trained")
sys.stdout.write("done")  # no newline: still buffered
finish_distributed_worker()
print("never reached")
"""
    result = _run_as_one_process_worker(script)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == "done"
    assert (tmp_path / "run.log").read_text() == "trained\n"


def test_a_worker_leaves_with_its_exit_code_after_the_group_is_gone(tmp_path):
    """end_worker_process(code), as ``segment`` under torchrun calls it after its shard left the group."""
    script = """
import sys, torch, torch.distributed as dist
from repvit_plugins.runtime.worker_exit import end_worker_process
dist.init_process_group("gloo")
parts = [None]
dist.all_gather_object(parts, {"images": 3})
dist.destroy_process_group()
sys.stdout.write("labelled")  # no newline: still buffered
end_worker_process(3)
print("never reached")
"""
    result = _run_as_one_process_worker(script)
    assert result.returncode == 3, result.stderr[-3000:]
    assert result.stdout == "labelled"


@pytest.mark.slow
@pytest.mark.parametrize("task", ["det", "seg"])
def test_image_demo_saves_a_visualisation(task, trained_detector, trained_segmentor, tiny_data, tmp_path):
    import numpy as np
    from PIL import Image

    config, (work_dir, *_), checkpoint, image = {
        "det": (TINY_DET, trained_detector, "iter_40.pth", tiny_data / "coco/images/0001.jpg"),
        "seg": (TINY_SEG, trained_segmentor, "iter_30.pth", tiny_data / "ade/images/validation/0001.jpg"),
    }[task]
    out = load_tool("image_demo", folder="demo").main(
        [str(image), config, str(work_dir / checkpoint), "--out-file", str(tmp_path / "vis.png"), "--fuse"])
    drawn, source = np.asarray(Image.open(out).convert("RGB")), np.asarray(Image.open(image).convert("RGB"))
    assert drawn.shape == source.shape and np.abs(drawn.astype(int) - source).mean() > 2


TOY_CONFIG = """
default_scope = 'mmengine'
custom_imports = dict(imports=['tests._mm_toy'], allow_failed_imports=False)
model = dict(type='ToyRegressor')
train_dataloader = dict(batch_size=8, num_workers=0, dataset=dict(type='ToyLine'),
                        sampler=dict(type='DefaultSampler', shuffle=True), collate_fn=dict(type='pseudo_collate'))
val_dataloader = dict(batch_size=8, num_workers=0, dataset=dict(type='ToyLine'),
                      sampler=dict(type='DefaultSampler', shuffle=False), collate_fn=dict(type='pseudo_collate'))
test_dataloader = val_dataloader
val_evaluator = test_evaluator = dict(type='ToyMSE')
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.1))
train_cfg = dict(by_epoch=True, max_epochs=15, val_interval=15)
val_cfg = test_cfg = dict()
default_hooks = dict(logger=dict(type='LoggerHook', interval=4), checkpoint=dict(type='CheckpointHook', interval=15))
"""


def test_tools_run_a_config_of_another_scope(tmp_path):
    """Nothing in the tools is mmdet/mmseg-only: a plain mmengine-scope config trains and tests."""
    config = tmp_path / "toy_regression.py"
    config.write_text(TOY_CONFIG)
    runner = _train(str(config), tmp_path / "work")
    assert runner.message_hub.get_scalar("val/mse").current() < 1e-3
    metrics = _test(str(config), tmp_path / "work/epoch_15.pth", tmp_path / "test", "--fuse")
    assert metrics["mse"] < 1e-3


def test_image_demo_refuses_a_config_of_another_scope(tmp_path):
    from repvit_plugins.mm.inference import UnsupportedScopeError, load_model

    config = tmp_path / "toy_regression.py"
    config.write_text(TOY_CONFIG)
    with pytest.raises(UnsupportedScopeError, match="default_scope is 'mmengine'"):
        load_model(config, tmp_path / "unused.pth")
    image = tmp_path / "photo.png"
    image.write_bytes(b"")  # the scope is checked before the image is read
    with pytest.raises(SystemExit, match="runs mmdet or mmseg configs") as exit_info:
        load_tool("image_demo", folder="demo").main([str(image), str(config), str(tmp_path / "unused.pth")])
    assert isinstance(exit_info.value.code, str)  # a message, not a traceback


@pytest.mark.parametrize("tool", ["train", "test", "convert_mm_checkpoint", "image_demo"])
def test_every_tool_explains_its_flags(tool, capsys):
    module = load_tool(tool, folder="demo" if tool == "image_demo" else "tools")
    with pytest.raises(SystemExit) as exit_info:
        module.parse_args(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    flags = {"train": ["--resume", "--amp", "--cfg-options", "--work-dir", "--launcher", "--auto-scale-lr"],
             "test": ["--fuse", "--out", "--show-dir", "--cfg-options", "--work-dir", "--launcher"],
             "convert_mm_checkpoint": ["--config"],
             "image_demo": ["--out-file", "--device", "--score-thr", "--opacity", "--fuse"]}[tool]
    assert all(flag in text for flag in flags)


def test_flags_fail_with_a_next_step(tmp_path, monkeypatch):
    from repvit_plugins.mm.runner import load_config, prepare_test, prepare_train

    cfg = load_config(TINY_SEG, work_dir=str(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="drop --amp"):
        prepare_train(cfg, amp=True)
    with pytest.raises(SystemExit, match="no such checkpoint"):
        prepare_train(cfg, resume=str(tmp_path / "missing.pth"))
    with pytest.raises(SystemExit, match="not found"):
        prepare_test(cfg, checkpoint=str(tmp_path / "missing.pth"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert prepare_train(cfg, amp=True).optim_wrapper.type == "AmpOptimWrapper"


@pytest.mark.slow
@pytest.mark.parametrize("task", ["det", "seg"])
def test_timm_backbone_trains_and_tests(task, tmp_path):
    config = TINY_TIMM[task]
    runner = _train(config, tmp_path / "train")
    assert type(runner.model.backbone).__name__ == "TimmBackbone" and runner.model.backbone.strides == [16, 32, 64]
    losses = [row["loss"] for row in _scalars(tmp_path / "train") if "loss" in row]
    assert losses[-1] < 0.6 * losses[0], losses
    checkpoint = tmp_path / "train" / ("iter_40.pth" if task == "det" else "iter_30.pth")
    metrics = _test(config, checkpoint, tmp_path / "test")
    if task == "det":  # measured: box AP 0.59, mask AP 0.70 after 40 iterations
        assert metrics["coco/bbox_mAP"] > 0.3 and metrics["coco/segm_mAP"] > 0.3
    else:  # measured: mIoU 27.9 after 30 iterations
        assert metrics["mIoU"] > 15
