"""RepViT-SAM encoder distillation: embedding cache, dataset, teacher, model, tools, configs, a tiny full run."""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ._distill_fixtures import IMG_SIZE, build_workspace, make_images, save_tiny_teacher, tiny_teacher_spec

pytest.importorskip("mmengine")

from repvit_plugins.bench.boxes import random_boxes  # noqa: E402
from repvit_plugins.bench.numeric_agreement import mask_iou  # noqa: E402
from repvit_plugins.distill import (  # noqa: E402
    CacheError,
    EmbeddingCache,
    SamDistillDataset,
    SamEncoderDistiller,
    agreement,
    build_teacher,
    cache_meta,
    export_distilled_sam,
    precompute_embeddings,
    sam_preprocess,
)
from repvit_plugins.distill.embedding_cache import _KILL_ENV  # noqa: E402
from repvit_plugins.weights.checkpoint_io import CheckpointError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "configs" / "tests" / "tiny_sam_distill.py"
GRID = IMG_SIZE // 16


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _meta() -> dict:
    return dict(teacher="test", img_size=IMG_SIZE, dtype="float32", shape=[256, GRID, GRID])


def _shard_rows(cache_dir: Path) -> list[str]:
    """Every key stored in any shard file, duplicates included (the ground truth, not the index)."""
    return [k for p in sorted((cache_dir / "shards").glob("*.pt"))
            for k in torch.load(p, weights_only=True)["keys"]]


# ---------------------------------------------------------------------------------------------- cache
def test_cache_round_trip_and_writer_numbering(tmp_path):
    cache = EmbeddingCache(tmp_path / "c", _meta())
    data = torch.randn(5, 256, GRID, GRID)
    with cache.writer("part0", shard_size=2) as writer:
        writer.add([f"k{i}" for i in range(3)], data[:3])
        writer.add(["k3", "k4"], data[3:])
    assert sorted(p.name for p in (tmp_path / "c" / "shards").iterdir()) == [
        "part0-000000.pt", "part0-000001.pt", "part0-000002.pt"]
    reopened = EmbeddingCache(tmp_path / "c")
    assert len(reopened) == 5 and reopened.missing(["k0", "k9"]) == ["k9"]
    for i in range(5):
        assert torch.equal(reopened.get(f"k{i}"), data[i])
    with reopened.writer("part0", shard_size=2) as writer:  # continues the numbering, never overwrites
        writer.add(["k5"], data[:1])
    assert (tmp_path / "c" / "shards" / "part0-000003.pt").is_file()
    with pytest.raises(CacheError, match="precompute_sam_embeddings"):
        reopened.get("absent")


def test_cache_recovers_from_a_kill_at_any_step(tmp_path):
    cache = EmbeddingCache(tmp_path / "c", _meta())
    data = torch.randn(4, 256, GRID, GRID)
    with cache.writer("part0", shard_size=2) as writer:
        writer.add(["a", "b", "c", "d"], data)
    index = tmp_path / "c" / "index-part0.jsonl"
    lines = index.read_text().splitlines()
    # killed after the second shard's rename, mid-way through its index line; plus a torn temporary file
    index.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])
    torn = tmp_path / "c" / "shards" / ".part0-000002.pt.x1y2.tmp"  # atomic_write_bytes names it so
    torn.write_bytes(b"partial")
    cache = EmbeddingCache(tmp_path / "c", _meta())
    assert sorted(cache.keys()) == ["a", "b", "c", "d"]  # the unindexed shard is found from its own keys
    assert torch.equal(cache.get("d"), data[3])
    cache.writer("part0").close()  # a writer repairs its index and removes its torn temporaries
    assert not torn.exists()
    assert [json.loads(line)["keys"] for line in index.read_text().splitlines()[-1:]] == [["c", "d"]]


def test_cache_refuses_another_teacher(tmp_path):
    EmbeddingCache(tmp_path / "c", _meta())
    with pytest.raises(CacheError, match="another setting"):
        EmbeddingCache(tmp_path / "c", {**_meta(), "teacher": "vit_h:sam_vit_h_4b8939"})
    with pytest.raises(CacheError, match="precompute_sam_embeddings"):
        EmbeddingCache(tmp_path / "empty")
    with pytest.raises(CacheError, match="shape"):
        EmbeddingCache(tmp_path / "c").writer().add(["x"], torch.zeros(1, 256, 4, 4))


# ---------------------------------------------------------------------------------------------- data
def test_preprocessing_matches_sam(tmp_path):
    from segment_anything.utils.transforms import ResizeLongestSide

    image = np.random.default_rng(0).integers(0, 256, (150, 230, 3), dtype=np.uint8)
    x, size = sam_preprocess(image, IMG_SIZE)
    sam = build_teacher(**tiny_teacher_spec(None), with_encoder=False)
    resized = torch.as_tensor(ResizeLongestSide(IMG_SIZE).apply_image(image)).permute(2, 0, 1)[None].float()
    assert size == tuple(resized.shape[-2:]) == (167, 256)
    torch.testing.assert_close(x, sam.preprocess(resized)[0])


def test_sa1b_layout_boxes_and_missing_cache(tmp_path):
    root = tmp_path / "sa1b"
    make_images(root / "sa_000000", 3, seed=3, sa1b=True)
    make_images(root / "sa_000000", 1, seed=4)  # an image without annotation file: not part of SA-1B
    dataset = SamDistillDataset(str(root), img_size=IMG_SIZE, with_boxes=True, max_boxes=2)
    assert dataset.layout == "sa1b" and len(dataset) == 3
    item = dataset[0]
    sample = item["data_samples"]
    assert item["inputs"].shape == (3, IMG_SIZE, IMG_SIZE) and "teacher_embed" not in item
    assert sample.key.startswith("sa_000000/sa_3") and sample.boxes.shape == (2, 4)
    h, w = sample.input_size
    assert max(h, w) == IMG_SIZE and (sample.boxes[:, 2:] <= torch.tensor([w, h]) + 1e-3).all()
    teacher = tiny_teacher_spec(save_tiny_teacher(tmp_path / "teacher.pth"))
    model = SamEncoderDistiller(student=dict(arch="m0_6", img_size=IMG_SIZE), teacher=teacher,
                                eval_cfg=dict(box_source="annotations", num_boxes=8)).eval()
    (result,) = model([item["inputs"]], [sample], mode="predict")  # online teacher, annotation boxes
    assert result["key"] == sample.key and result["iou"].shape == (2,) and result["embed_mse"] > 0
    with EmbeddingCache(tmp_path / "cache", _meta()).writer() as writer:
        writer.add([dataset[1]["data_samples"].key], torch.zeros(1, 256, GRID, GRID))
    subset = SamDistillDataset(str(root), img_size=IMG_SIZE, cache_dir=str(tmp_path / "cache"), indices=[1])
    assert len(subset) == 1 and torch.equal(subset[0]["teacher_embed"], torch.zeros(256, GRID, GRID))
    with pytest.raises(CacheError, match="2 of 3 images have no teacher embedding.*precompute_sam_embeddings"):
        SamDistillDataset(str(root), img_size=IMG_SIZE, cache_dir=str(tmp_path / "cache"))


# ---------------------------------------------------------------------------------------------- teacher
def test_teacher_without_encoder_loads_only_the_decoder(tmp_path):
    path = save_tiny_teacher(tmp_path / "teacher.pth")
    full = build_teacher(**tiny_teacher_spec(path))
    light = build_teacher(**tiny_teacher_spec(path), with_encoder=False)
    assert not any(p.requires_grad for p in light.parameters())
    torch.testing.assert_close(light.mask_decoder.state_dict(), full.mask_decoder.state_dict())
    with pytest.raises(RuntimeError, match="precompute_sam_embeddings"):
        light.image_encoder(torch.zeros(1, 3, IMG_SIZE, IMG_SIZE))
    encoder_only = {k: v for k, v in torch.load(path, weights_only=True).items() if k.startswith("image_encoder.")}
    torch.save(encoder_only, tmp_path / "encoder_only.pth")
    with pytest.raises(CheckpointError, match="no prompt_encoder"):
        build_teacher(**tiny_teacher_spec(tmp_path / "encoder_only.pth"), with_encoder=False)
    with pytest.raises(ValueError, match="unknown teacher"):
        build_teacher("vit_x")


# ---------------------------------------------------------------------------------------------- model
def test_model_cached_and_online_teacher_agree_and_checkpoints_hold_the_student_only(tmp_path):
    path = save_tiny_teacher(tmp_path / "teacher.pth")
    model = SamEncoderDistiller(student=dict(arch="m0_6", img_size=IMG_SIZE), teacher=tiny_teacher_spec(path))
    x = torch.randn(2, 3, IMG_SIZE, IMG_SIZE)
    cached = model.teacher.image_encoder(x)
    online = model(x, mode="loss")["loss_mse"]
    torch.testing.assert_close(model(x, mode="loss", teacher_embed=list(cached))["loss_mse"], online)
    state = model.state_dict()
    assert state and all(k.startswith("student.") for k in state)
    model.load_state_dict(state, strict=True)  # the teacher comes from its own checkpoint
    model.train()
    assert model.student.training and not model.teacher.training
    light = SamEncoderDistiller(student=dict(arch="m0_6", img_size=IMG_SIZE),
                                teacher=dict(tiny_teacher_spec(path), with_encoder=False))
    with pytest.raises(RuntimeError, match="cache_dir"):
        light(x, mode="loss")
    with pytest.raises(ValueError, match="same img_size"):
        SamEncoderDistiller(student=dict(arch="m0_6", img_size=2 * IMG_SIZE), teacher=tiny_teacher_spec(path))


def test_student_starts_from_imagenet_or_repvit_sam_weights(tmp_path):
    from repvit_plugins.distill import build_student
    from repvit_plugins.models import build_repvit
    from repvit_plugins.models.repvit_sam import build_repvit_sam

    imagenet = build_repvit("m0_6", distillation=True)
    torch.save({"model": imagenet.state_dict()}, tmp_path / "imagenet.pth")
    student = build_student("m0_6", IMG_SIZE, pretrained=str(tmp_path / "imagenet.pth"))
    torch.testing.assert_close(student.features.state_dict(), imagenet.features.state_dict())
    sam = build_repvit_sam(arch="m0_6", img_size=IMG_SIZE)
    torch.save(sam.state_dict(), tmp_path / "repvit_sam_m0_6.pt")
    student = build_student("m0_6", IMG_SIZE, pretrained=str(tmp_path / "repvit_sam_m0_6.pt"))
    torch.testing.assert_close(student.state_dict(), sam.image_encoder.state_dict())
    teacher = build_teacher("repvit_sam", tmp_path / "repvit_sam_m0_6.pt", IMG_SIZE, arch="m0_6")  # RepViT-SAM teaches
    torch.testing.assert_close(teacher.state_dict(), sam.state_dict())


# ---------------------------------------------------------------------------------------------- agreement
def test_box_prompt_agreement_pieces(tmp_path):
    a = torch.zeros(3, 8, 8, dtype=torch.bool)
    b = a.clone()
    a[0, :4], b[0, :2] = True, True  # IoU 0.5; masks 1: both empty -> 1; mask 2: disjoint -> 0
    a[2, 0], b[2, 1] = True, True
    torch.testing.assert_close(mask_iou(a, b), torch.tensor([0.5, 1.0, 0.0]))
    torch.testing.assert_close(agreement._mask_boxes(a[[0, 2]]), torch.tensor([[0.0, 0, 8, 4], [0, 0, 8, 1]]))
    boxes = random_boxes((100, 60), 16, torch.Generator().manual_seed(0))
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= torch.tensor([60.0, 100.0])).all()
    assert ((boxes[:, 2:] - boxes[:, :2]) >= torch.tensor([6.0, 10.0]) - 1e-4).all()
    sam = build_teacher(**tiny_teacher_spec(None), with_encoder=False)
    embed = torch.randn(256, GRID, GRID)
    found = agreement.boxes_from_teacher(sam, embed[None], (200, 256), num_boxes=3)
    assert found.shape[1] == 4 and len(found) <= 3
    for source in agreement.BOX_SOURCES:
        iou = agreement.box_prompt_agreement(sam, embed, embed, (200, 256), "img.png", box_source=source,
                                             num_boxes=4)
        assert len(iou) >= 1 and torch.equal(iou, torch.ones_like(iou))  # same embedding, same masks
    given = agreement.box_prompt_agreement(sam, embed, embed, (200, 256), "a", torch.tensor([[0.0, 0, 50, 50]]),
                                           box_source="annotations")
    assert given.shape == (1,)
    other = torch.randn(256, GRID, GRID)
    differ = agreement.box_prompt_agreement(sam, other, embed, (200, 256), "a", box_source="random", num_boxes=8)
    assert differ.mean() < 0.9  # other embeddings, other masks: the measure can fail
    torch.testing.assert_close(differ, agreement.box_prompt_agreement(sam, other, embed, (200, 256), "a",
                                                                      box_source="random", num_boxes=8))


# ---------------------------------------------------------------------------------------------- precompute
def test_precompute_killed_with_sigkill_then_rerun_embeds_each_image_once(tmp_path, capsys):
    images = tmp_path / "images"
    make_images(images, 10, seed=5)
    teacher = save_tiny_teacher(tmp_path / "teacher.pth")
    args = ["--data-root", str(images), "--cache-dir", str(tmp_path / "cache"), "--teacher", "vit",
            "--teacher-checkpoint", str(teacher), "--teacher-vit", json.dumps(tiny_teacher_spec(None)["vit"]),
            "--img-size", str(IMG_SIZE), "--batch-size", "2", "--shard-size", "2", "--workers", "0",
            "--dtype", "float32", "--device", "cpu", "--no-progress"]
    env = {**os.environ, _KILL_ENV: "4"}  # SIGKILL itself after the 2nd shard's rename, before its index line
    killed = subprocess.run([sys.executable, str(REPO / "tools" / "precompute_sam_embeddings.py"), *args],
                            env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert len(_shard_rows(tmp_path / "cache")) == 4
    assert len((tmp_path / "cache" / "index-part0.jsonl").read_text().splitlines()) == 1  # 2nd shard unindexed
    stats = _tool("precompute_sam_embeddings").main(args)  # the same command again
    assert stats == [dict(embedded=6, cached=4, total=10)]  # the teacher saw each image once over both runs
    assert "embedded 6 new images, 4 were already cached" in capsys.readouterr().out
    keys = _shard_rows(tmp_path / "cache")
    assert sorted(keys) == sorted(f"img_{i:03d}.png" for i in range(10))  # each image stored exactly once
    straight = tmp_path / "straight"
    stats = precompute_embeddings(SamDistillDataset(str(images), img_size=IMG_SIZE), tiny_teacher_spec(teacher),
                                  straight, batch_size=2, dtype="float32", progress=False)
    assert stats == dict(embedded=10, cached=0, total=10)
    resumed, direct = EmbeddingCache(tmp_path / "cache"), EmbeddingCache(straight)
    assert resumed.meta == direct.meta == {**cache_meta(tiny_teacher_spec(teacher), IMG_SIZE, "float32"),
                                           "format": 1}
    for key in keys:
        torch.testing.assert_close(resumed.get(key), direct.get(key), rtol=0, atol=1e-5)
    again = precompute_embeddings(SamDistillDataset(str(images), img_size=IMG_SIZE), tiny_teacher_spec(teacher),
                                  straight, progress=False, dtype="float32")
    assert again == dict(embedded=0, cached=10, total=10)


# ---------------------------------------------------------------------------------------------- tiny full run
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Precompute with the config, then train it through tools/train.py; returns (workspace, work_dir, logs)."""
    root = build_workspace(tmp_path_factory.mktemp("distill"))
    work_dir = root / "work"
    previous = os.environ.get("REPVIT_TINY_DISTILL")
    os.environ["REPVIT_TINY_DISTILL"] = str(root)
    try:
        stats = _tool("precompute_sam_embeddings").main(["--config", str(TINY_CONFIG), "--workers", "0",
                                                         "--device", "cpu", "--no-progress"])
        assert stats == [dict(embedded=8, cached=0, total=8), dict(embedded=4, cached=0, total=4)]
        _tool("train").main([str(TINY_CONFIG), "--work-dir", str(work_dir)])
    finally:
        if previous is None:
            os.environ.pop("REPVIT_TINY_DISTILL")
        else:
            os.environ["REPVIT_TINY_DISTILL"] = previous
    scalars = next(work_dir.glob("*/vis_data/scalars.json"))
    logs = [json.loads(line) for line in scalars.read_text().splitlines()]
    return root, work_dir, logs


def test_tiny_run_halves_the_loss_and_raises_mask_agreement(tiny_run):
    _, _, logs = tiny_run
    losses = [e["loss_mse"] for e in logs if "loss_mse" in e]
    vals = [e for e in logs if "distill/mIoU" in e]
    assert len(losses) == 30 and len(vals) == 2
    first, last = losses[0], float(np.mean(losses[-5:]))
    assert last <= 0.5 * first, (first, last)
    before, after = vals
    assert after["distill/embed_mse"] <= 0.6 * before["distill/embed_mse"], (before, after)
    assert after["distill/mIoU"] >= before["distill/mIoU"] + 0.1, (before, after)
    print(f"\ntiny run: loss {first:.3f} -> {last:.3f}; held-out mIoU {before['distill/mIoU']:.3f} -> "
          f"{after['distill/mIoU']:.3f}; embed MSE {before['distill/embed_mse']:.3f} -> "
          f"{after['distill/embed_mse']:.3f}")


def test_exported_checkpoint_loads_and_predicts(tiny_run, tmp_path, monkeypatch):
    from segment_anything import SamPredictor

    from repvit_plugins.models.repvit_sam import build_repvit_sam

    root, work_dir, _ = tiny_run
    monkeypatch.setenv("REPVIT_TINY_DISTILL", str(root))
    checkpoint = work_dir / "iter_30.pth"
    out = _tool("export_distilled_sam").main([str(checkpoint), str(tmp_path / "distilled.pt"),
                                              "--config", str(TINY_CONFIG)])
    flat = torch.load(out, weights_only=True)
    trained = torch.load(checkpoint, weights_only=True)["state_dict"]
    assert trained and all(k.startswith("student.") for k in trained)  # no teacher in training checkpoints
    teacher = torch.load(root / "teacher.pth", weights_only=True)
    torch.testing.assert_close(flat["image_encoder.neck.0.weight"], trained["student.neck.0.weight"])
    torch.testing.assert_close(flat["mask_decoder.iou_prediction_head.layers.0.weight"],
                               teacher["mask_decoder.iou_prediction_head.layers.0.weight"])
    sam = build_repvit_sam(checkpoint=out, arch="m0_6", img_size=IMG_SIZE)
    predictor = SamPredictor(sam)
    from PIL import Image

    image = np.asarray(Image.open(next((root / "images" / "val").glob("*.png"))).convert("RGB"))
    predictor.set_image(image)
    masks, scores, _ = predictor.predict(box=np.array([10, 10, 120, 100]), multimask_output=False)
    assert masks.shape == (1, *image.shape[:2]) and np.isfinite(scores).all()
    # the arch is read from the weights when no config says it
    path, arch = export_distilled_sam(checkpoint, root / "teacher.pth", tmp_path / "b.pt", img_size=IMG_SIZE)
    assert arch == "m0_6" and path.is_file()
    with pytest.raises(CheckpointError, match="no student encoder"):
        export_distilled_sam(root / "teacher.pth", root / "teacher.pth", tmp_path / "c.pt")


# ---------------------------------------------------------------------------------------------- configs, tools
@pytest.mark.parametrize("name,arch", [("repvit-m2.3_sam-vit-h-distill_sa1b.py", "m2_3"),
                                       ("repvit-m0.9_sam-vit-h-distill_sa1b.py", "m0_9")])
def test_full_recipes_build(name, arch):
    from mmengine.config import Config
    from mmengine.registry import DATASETS, HOOKS, METRICS, MODELS

    cfg = Config.fromfile(str(REPO / "configs" / "repvit_sam" / name))
    assert cfg.model.student.arch == arch and cfg.model.teacher.model_type == "vit_h"
    assert cfg.train_cfg.max_epochs == 8 and cfg.train_dataloader.batch_size * 1 == 8
    assert cfg.train_dataloader.dataset.subdirs == [f"sa_{i:06d}" for i in range(10)]  # 1% of SA-1B
    assert DATASETS.get(cfg.train_dataloader.dataset.type) is SamDistillDataset
    assert METRICS.get(cfg.val_evaluator.type) is not None
    assert all(HOOKS.get(h.type) is not None for h in cfg.custom_hooks)
    model_cfg = cfg.model.copy()
    model_cfg.student.pretrained = None  # no downloads in tests
    model_cfg.teacher.checkpoint = None
    model = MODELS.build(model_cfg)
    assert model.student.arch_name == arch and model.student.embedding_size == 64
    tool = _tool("precompute_sam_embeddings")  # what the precompute tool takes from the config
    teacher, todo = tool.jobs(tool.parse_args(["--config", str(REPO / "configs" / "repvit_sam" / name)]))
    assert teacher == dict(model_type="vit_h", checkpoint="sam_vit_h_4b8939")
    assert [(d["subdirs"], d.get("indices"), c) for d, c in todo] == [
        (cfg.train_dataloader.dataset.subdirs, None, cfg.train_dataloader.dataset.cache_dir),
        (["sa_000010"], 200, cfg.train_dataloader.dataset.cache_dir)]


@pytest.mark.parametrize("tool", ["precompute_sam_embeddings", "export_distilled_sam"])
def test_tools_explain_every_flag(tool, capsys):
    module = _tool(tool)
    parser = module.build_parser()
    undocumented = [a.dest for a in parser._actions if not a.help]
    assert not undocumented
    with pytest.raises(SystemExit) as exit_info:
        module.parse_args(["--help"])
    assert exit_info.value.code == 0 and "--teacher-checkpoint" in capsys.readouterr().out


@pytest.mark.slow
def test_tiny_config_trains_under_torchrun_ddp(tiny_run, tmp_path):
    import socket

    root, _, _ = tiny_run
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "REPVIT_TINY_DISTILL": str(root), "PYTHON": sys.executable, "PORT": str(port),
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(REPO / "tools" / "dist_train.sh"), str(TINY_CONFIG), "2", "--work-dir",
                           str(tmp_path), "--cfg-options", "train_cfg.max_iters=2", "train_cfg.val_interval=2"],
                          env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    logs = [json.loads(line) for line in next(tmp_path.glob("*/vis_data/scalars.json")).read_text().splitlines()]
    assert len([e for e in logs if "loss_mse" in e]) == 2
    vals = [e for e in logs if "distill/mIoU" in e]
    assert len(vals) == 2 and all(e["distill/num_boxes"] == 4 * 16 for e in vals)  # both ranks' images gathered


@pytest.mark.parametrize("arch", ["m0_9", "m1", "m1_1", "m2", "m3"])
def test_infer_arch_tells_the_first_version_apart(arch):
    from repvit_plugins.distill.export import infer_arch
    from repvit_plugins.models import build_repvit

    # M1 / M2 have the blocks of M0.9 / M1.1; the first version's RepVGG-DW tells them apart
    assert infer_arch(build_repvit(arch, num_classes=0).state_dict()) == arch
