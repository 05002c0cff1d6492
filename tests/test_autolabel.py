"""`repvit-plugins autolabel`: dataset rules (split, names, filters), then photos -> labels -> a trained student.

The end-to-end test goes through the real commands: autolabel with a tiny random Grounding DINO and
RepViT-SAM on synthetic photos, tools/train.py on the generated config (a tiny RepViT-M0.6 Mask R-CNN),
tools/test.py (CocoMetric bbox + segm) and demo/image_demo.py.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from repvit_plugins.cli import main as cli_main
from repvit_plugins.jobs.dataset import DatasetOptions, category_names, parse_renames, split_of

from ._grounding_fixtures import make_tiny_grounded_models
from ._mm_fixtures import load_tool, write_coco

# slim heads for the tiny CPU run, on top of the generated config (which keeps the full Mask R-CNN heads)
TINY_HEADS = """_base_ = {base!r}
model = dict(
    backbone=dict(norm_eval=False),
    neck=dict(out_channels=64),
    rpn_head=dict(in_channels=64, feat_channels=64),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64), bbox_head=dict(in_channels=64, fc_out_channels=256),
        mask_roi_extractor=dict(out_channels=64), mask_head=dict(num_convs=2, in_channels=64, conv_out_channels=64)),
    train_cfg=dict(rpn=dict(sampler=dict(num=64)), rcnn=dict(sampler=dict(num=64))))
optim_wrapper = dict(optimizer=dict(lr=2e-3, weight_decay=1e-4))
default_hooks = dict(logger=dict(interval=4))
randomness = dict(seed=0, deterministic=True)
"""


def test_category_names_strip_articles_rename_and_merge():
    assert category_names(["a dog", "The cat", "cup"], {}) == (["dog", "cat", "cup"], [0, 1, 2])
    renames = parse_renames(["a puppy=dog", "A Hound = dog"])
    assert category_names(["a dog", "a puppy", "a hound", "a cat"], renames) == (["dog", "cat"], [0, 0, 0, 1])
    with pytest.raises(ValueError, match="not a class of the prompt"):
        category_names(["a dog"], parse_renames(["a cat=cat"]))
    with pytest.raises(ValueError, match="PROMPT_CLASS=NAME"):
        parse_renames(["dog"])


def test_split_is_seeded_per_image_and_near_the_fraction():
    keys = [f"img{i}-abc" for i in range(2000)]
    splits = [split_of(k, 0, 0.2) for k in keys]
    assert splits == [split_of(k, 0, 0.2) for k in keys]  # same on every run
    assert 0.17 < splits.count("val") / len(keys) < 0.23
    assert splits != [split_of(k, 1, 0.2) for k in keys]  # another seed, another split
    with pytest.raises(ValueError, match="val_fraction"):
        DatasetOptions(val_fraction=1.0)


def test_prompt_classes_match_a_closed_set_model():
    from repvit_plugins.grounding.mmdet_closed_set import match_classes

    assert match_classes(["a Dog", "cat"], ["cat", "dog", "cup"]) == {1: 0, 0: 1}
    with pytest.raises(ValueError, match="the detector knows cat, dog; not a frisbee"):
        match_classes(["a dog", "a frisbee"], ["cat", "dog"])


@pytest.mark.parametrize("arch", ["m0_9", "m1_5"])
def test_generated_config_builds_the_arch_with_the_dataset_classes(arch, tmp_path):
    pytest.importorskip("mmdet")
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from repvit_plugins.jobs.train_config import TrainingSchedule, write_training_config
    from repvit_plugins.models.repvit import ARCHS

    path = write_training_config(tmp_path, ["dog", "cat", "cup"], 50, TrainingSchedule(arch=arch))
    assert path.name == f"mask-rcnn_repvit-{arch.replace('_', '.')}_autolabel.py"
    cfg = Config.fromfile(str(path))
    assert cfg.train_cfg.max_epochs == 160  # 4,000 iterations of 25
    assert cfg.train_dataloader.dataset.metainfo.classes == ("dog", "cat", "cup")
    assert cfg.model.backbone.init_cfg.checkpoint == f"repvit_{arch}_distill_300e"
    cfg.model.backbone.init_cfg = None
    init_default_scope("mmdet")
    model = MODELS.build(cfg.model)
    assert model.neck.in_channels == list(ARCHS[arch].channels)
    assert model.backbone.out_indices == tuple(ARCHS[arch].det_out_indices)
    assert model.roi_head.bbox_head.num_classes == model.roi_head.mask_head.num_classes == 3


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Eight synthetic 128x128 photos of big squares and discs."""
    return write_coco(tmp_path_factory.mktemp("photos"), num_images=8) / "images"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return make_tiny_grounded_models(tmp_path_factory.mktemp("models"))


def autolabel_args(photos: Path, out: Path, models: dict, *extra: str) -> list[str]:
    """``autolabel`` with the tiny random teacher: low thresholds, mask-tight boxes, one label per image."""
    return ["autolabel", str(photos), "--prompt", "a square. a disc.", "--out", str(out),
            "--detector-model", str(models["detector"]), "--sam-checkpoint", str(models["sam"]),
            "--sam-arch", "m0_6", "--sam-image-size", "256", "--box-threshold", "0", "--text-threshold", "0",
            "--max-detections", "1", "--boxes-from-masks", "--fill-holes", "--min-area", "64", "--no-progress",
            "--arch", "m0_6", "--no-pretrained", "--epochs", "12", "--image-size", "128", "128", *extra]


def _coco(path: Path):
    from pycocotools.coco import COCO

    return COCO(str(path))


@pytest.mark.slow
def test_autolabel_writes_a_stable_disjoint_split(photos, models, tmp_path, capsys):
    out = tmp_path / "dataset"
    assert cli_main(autolabel_args(photos, out, models, "--max-instances", "1")) == 0
    printed = capsys.readouterr().out
    assert "dataset: " in printed and "train with: python tools/train.py" in printed
    train, val = _coco(out / "train.json"), _coco(out / "val.json")
    train_files = {i["file_name"] for i in train.dataset["images"]}
    val_files = {i["file_name"] for i in val.dataset["images"]}
    assert not train_files & val_files and len(train_files | val_files) == 8 and val_files
    assert {c["name"] for c in train.dataset["categories"]} == {"square", "disc"}
    ann_ids = [a["id"] for a in train.dataset["annotations"] + val.dataset["annotations"]]
    assert len(ann_ids) == len(set(ann_ids))
    for coco in (train, val):
        for ann in coco.loadAnns(coco.getAnnIds()):
            assert coco.annToMask(ann).sum() == ann["area"] > 0
    labels = json.loads((out / "labels.json").read_text())
    assert sum(n["train"] + n["val"] for n in labels["labels"].values()) == len(ann_ids)
    before = {name: (out / name).read_bytes() for name in ("train.json", "val.json")}
    # a rerun (everything done) and a merge without models write the same files
    assert cli_main(autolabel_args(photos, out, models, "--max-instances", "1")) == 0
    assert "0 processed now, 8 already done" in capsys.readouterr().out
    assert {name: (out / name).read_bytes() for name in before} == before
    assert cli_main(autolabel_args(photos, out, models, "--max-instances", "1", "--merge-only")) == 0
    assert {name: (out / name).read_bytes() for name in before} == before
    # other filters and names: a new assembly, no new labelling
    assert cli_main(autolabel_args(photos, out, models, "--merge-only", "--min-score", "2",
                                   "--rename", "a square=shape", "--rename", "a disc=shape")) == 0
    assert "dropped 8 labels by score" in capsys.readouterr().out
    assert [c["name"] for c in _coco(out / "train.json").dataset["categories"]] == ["shape"]


def _losses(work_dir: Path) -> list[float]:
    (log,) = work_dir.glob("*/vis_data/scalars.json")
    return [row["loss"] for row in map(json.loads, log.read_text().splitlines()) if "loss" in row]


@pytest.mark.slow
def test_photos_to_a_trained_student(photos, models, tmp_path, capsys):
    out = tmp_path / "dataset"
    assert cli_main(autolabel_args(photos, out, models, "--rename", "a square=shape", "--rename",
                                   "a disc=shape")) == 0
    capsys.readouterr()
    (generated,) = out.glob("mask-rcnn_repvit-m0.6_autolabel.py")
    config = tmp_path / "tiny_student.py"
    config.write_text(TINY_HEADS.format(base=str(generated)))
    work_dir = tmp_path / "work"
    load_tool("train").main([str(config), "--work-dir", str(work_dir), "--no-auto-scale-lr"])
    losses = _losses(work_dir)
    assert losses[-1] < 0.5 * losses[0], losses
    checkpoint = work_dir / "epoch_12.pth"
    metrics = load_tool("test").main([str(config), str(checkpoint), "--work-dir", str(tmp_path / "test")])
    printed = capsys.readouterr().out
    assert '"coco/bbox_mAP"' in printed and '"coco/segm_mAP"' in printed  # AP on the val split
    # the student reproduces its teacher's labels on the training images
    on_train = load_tool("test").main([
        str(config), str(checkpoint), "--work-dir", str(tmp_path / "test_train"), "--cfg-options",
        "test_dataloader.dataset.ann_file=train.json", f"test_evaluator.ann_file={out}/train.json"])
    print("student AP, val:", metrics, "train:", on_train, "losses:", losses, file=sys.stderr)
    # measured: bbox AP 0.69 (AP50 1.0), segm AP 0.32 (AP50 0.64); the random teacher's masks are noisy blobs
    assert on_train["coco/bbox_mAP_50"] >= 0.8 and on_train["coco/segm_mAP_50"] >= 0.5, on_train
    assert on_train["coco/bbox_mAP"] >= 0.5 and on_train["coco/segm_mAP"] >= 0.2, on_train
    drawn = load_tool("image_demo", "demo").main([str(photos / "0000.jpg"), str(config), str(checkpoint),
                                                  "--out-file", str(tmp_path / "drawn.jpg"), "--score-thr", "0.1"])
    assert drawn.stat().st_size > 0
    # the loop closed: the student is the pipeline's detector, RepViT-SAM segments its boxes
    student = ["--detector", "mmdet", "--detector-model", str(config), "--detector-checkpoint", str(checkpoint),
               "--sam-checkpoint", str(models["sam"]), "--sam-arch", "m0_6", "--sam-image-size", "256",
               "--box-threshold", "0.3", "--no-progress", "--coco"]
    assert cli_main(["segment", str(photos), "--prompt", "a shape.", "--out", str(tmp_path / "seg"), *student]) == 0
    coco = _coco(tmp_path / "seg" / "annotations.json")
    assert len(coco.getImgIds()) == 8 and coco.getAnnIds() and coco.loadCats(1)[0]["name"] == "a shape"
    assert cli_main(["segment", str(photos), "--prompt", "a dog.", "--out", str(tmp_path / "dog"), *student]) == 1
    assert "the detector knows shape; not a dog" in capsys.readouterr().out
