"""RepViT as an mmdet / mmseg backbone: registries, taps, freezing, BN modes, init_cfg, configs, converter."""
from __future__ import annotations

import copy
import pickle
from pathlib import Path

import pytest
import torch

pytest.importorskip("mmengine")
mmdet = pytest.importorskip("mmdet")
mmseg = pytest.importorskip("mmseg")

import repvit_plugins.mm as rmm  # noqa: E402
from repvit_plugins.mm import RepViTBackbone  # noqa: E402
from repvit_plugins.models import ARCHS, RepViT, reparameterize  # noqa: E402
from repvit_plugins.models.repvit_keys import official_to_timm  # noqa: E402
from repvit_plugins.weights.checkpoint_io import CheckpointError, load_checkpoint_file  # noqa: E402
from repvit_plugins.weights.zoo import ZOO, cache_dir  # noqa: E402

from ._mm_fixtures import ROOT, load_tool  # noqa: E402
from .conftest import randomize_batchnorm  # noqa: E402

FULL_CONFIGS = {  # config -> (arch, official neck in_channels)
    "mask_rcnn/mask-rcnn_repvit-m1.1_fpn_1x_coco.py": ("m1_1", [64, 128, 256, 512]),
    "mask_rcnn/mask-rcnn_repvit-m1.5_fpn_1x_coco.py": ("m1_5", [64, 128, 256, 512]),
    "mask_rcnn/mask-rcnn_repvit-m2.3_fpn_1x_coco.py": ("m2_3", [80, 160, 320, 640]),
    "sem_fpn/fpn_repvit-m1.1_8xb4-40k_ade20k-512x512.py": ("m1_1", [64, 128, 256, 512]),
    "sem_fpn/fpn_repvit-m1.5_8xb4-40k_ade20k-512x512.py": ("m1_5", [64, 128, 256, 512]),
    "sem_fpn/fpn_repvit-m2.3_8xb4-40k_ade20k-512x512.py": ("m2_3", [80, 160, 320, 640]),
}
OFFICIAL_TAPS = {  # arch -> (detection, segmentation) block indices of the official configs
    "m1_1": ((2, 6, 20, 24), (3, 7, 21, 24)),
    "m1_5": ((4, 10, 36, 42), (5, 11, 37, 42)),
    "m2_3": ((6, 14, 50, 54), (7, 15, 51, 54)),
}
TINY_DET = ROOT / "configs/tests/mask-rcnn_repvit-m0.6_fpn_tiny-synthetic.py"



def _backbone(arch: str = "m0_6", **kwargs) -> RepViTBackbone:
    return randomize_batchnorm(RepViTBackbone(arch, **kwargs))


def _bn_layers(module: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


# --- registration -------------------------------------------------------------------------------------------

def test_registered_in_mmdet_and_mmseg():
    from mmdet.registry import MODELS as DET
    from mmseg.registry import MODELS as SEG

    assert DET.module_dict["RepViT"] is RepViTBackbone and SEG.module_dict["RepViT"] is RepViTBackbone
    assert {"mmdet", "mmseg"} <= set(rmm.REGISTERED_IN)
    assert DET.build(dict(type="RepViT", arch="m0_6")).out_indices == ARCHS["m0_6"].det_out_indices


@pytest.mark.parametrize("missing", ["mmdet", "mmseg"])
def test_registration_works_with_only_one_of_mmdet_mmseg(monkeypatch, missing):
    monkeypatch.setitem(__import__("sys").modules, f"{missing}.registry", None)  # import now raises ImportError
    scopes = rmm._register()
    assert missing not in scopes and {"mmengine", {"mmdet": "mmseg", "mmseg": "mmdet"}[missing]} <= set(scopes)


# --- taps: equal to the core model and to timm --------------------------------------------------------------

@pytest.mark.parametrize("arch", ["m0_6", "m1_1"])
def test_taps_equal_core_intermediates(arch):
    core = randomize_batchnorm(RepViT(arch, num_classes=0)).eval()
    x = torch.randn(1, 3, 96, 128)
    for indices in (ARCHS[arch].det_out_indices, ARCHS[arch].seg_out_indices):
        backbone = RepViTBackbone(arch, out_indices=indices).eval()
        backbone.load_state_dict(core.state_dict(), strict=True)
        with torch.no_grad():
            taps, reference = backbone(x), core.forward_intermediates(x, indices)
        assert len(taps) == 4
        for tap, ref, stride in zip(taps, reference, (4, 8, 16, 32)):
            assert torch.equal(tap, ref)
            assert tap.shape[-2:] == (96 // stride, 128 // stride)


@pytest.mark.parametrize("arch", ["m0_9", "m1_1"])
def test_detection_taps_equal_timm_stage_outputs(arch):
    timm = pytest.importorskip("timm")
    backbone = _backbone(arch).eval()  # default out_indices: the official detection taps
    theirs = timm.create_model(f"repvit_{arch}", pretrained=False, num_classes=0).eval()
    theirs.load_state_dict(official_to_timm(backbone.state_dict(), arch), strict=True)
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        taps, stages = backbone(x), theirs.forward_intermediates(x, intermediates_only=True)
    assert len(taps) == len(stages) == 4
    for tap, stage in zip(taps, stages):
        assert (tap - stage).abs().max() <= 1e-5


def test_out_indices_names_and_errors():
    assert RepViTBackbone("m1_1", out_indices="seg").out_indices == OFFICIAL_TAPS["m1_1"][1]
    assert RepViTBackbone("m1_1", out_indices=(-1,)).out_indices == (24,)
    assert RepViTBackbone("M1.5").out_channels == [64, 128, 256, 512]
    assert RepViTBackbone("m0_6", drop_path_rate=0.1).features[-1].channel_mixer.drop == pytest.approx(0.1)
    with pytest.raises(ValueError, match=r"0\.\.24.*\(2, 6, 20, 24\)"):
        RepViTBackbone("m1_1", out_indices=(2, 6, 20, 25))


# --- training behaviour ---------------------------------------------------------------------------------------

def test_norm_eval_keeps_every_bn_in_eval_mode():
    backbone = _backbone(norm_eval=True).train()
    assert backbone.training and all(not bn.training for bn in _bn_layers(backbone))
    stats = copy.deepcopy([(bn.running_mean, bn.running_var) for bn in _bn_layers(backbone)])
    backbone(torch.randn(2, 3, 64, 64))[-1].sum().backward()
    assert all(torch.equal(m, bn.running_mean) and torch.equal(v, bn.running_var)
               for (m, v), bn in zip(stats, _bn_layers(backbone)))
    assert all(bn.training for bn in _bn_layers(_backbone(norm_eval=False).train()))


def test_frozen_stages_freeze_parameters_and_statistics():
    backbone = _backbone(frozen_stages=1, norm_eval=False).train()
    last_frozen = ARCHS["m0_6"].stage_ends[0]
    frozen = backbone.features[: last_frozen + 1]
    assert all(not p.requires_grad for p in frozen.parameters())
    assert all(p.requires_grad for p in backbone.features[last_frozen + 1:].parameters())
    assert all(not bn.training for bn in _bn_layers(frozen))
    before = copy.deepcopy(backbone.state_dict())
    optimizer = torch.optim.SGD([p for p in backbone.parameters() if p.requires_grad], lr=0.1)
    sum(t.square().mean() for t in backbone(torch.randn(2, 3, 64, 64))).backward()
    optimizer.step()
    after = backbone.state_dict()
    prefixes = tuple(f"features.{i}." for i in range(last_frozen + 1))
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith(prefixes))
    changed = [k for k in before if not k.startswith(prefixes) and not torch.equal(before[k], after[k])]
    assert any(k.endswith("running_mean") for k in changed) and any(k.endswith(".c.weight") for k in changed)
    with pytest.raises(ValueError, match="frozen_stages"):
        RepViTBackbone("m0_6", frozen_stages=5)


def test_sync_bn_under_distributed_gpu_training(monkeypatch):
    from mmengine.model import revert_sync_batchnorm

    import repvit_plugins.mm.backbone as module

    reference = _backbone().eval()
    monkeypatch.setattr(module, "is_distributed", lambda: True)
    monkeypatch.setattr(module, "get_world_size", lambda: 2)
    monkeypatch.setattr(module.torch.cuda, "is_available", lambda: True)
    synced = RepViTBackbone("m0_6")
    assert all(isinstance(bn, torch.nn.SyncBatchNorm) for bn in _bn_layers(synced))
    synced.load_state_dict(reference.state_dict())  # same keys as plain BN
    reverted = revert_sync_batchnorm(synced).eval()  # what mmengine does when not distributed
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(reverted(x), reference(x)))
    monkeypatch.setattr(module.torch.cuda, "is_available", lambda: False)  # CPU (gloo): torch has no SyncBN
    assert not any(isinstance(bn, torch.nn.SyncBatchNorm) for bn in _bn_layers(RepViTBackbone("m0_6")))


# --- fusion: RepViT's own, never mmcv's ------------------------------------------------------------------------

def test_reparameterize_keeps_taps_while_mmcv_fuse_conv_bn_corrupts_them():
    from mmcv.cnn import fuse_conv_bn

    backbone = _backbone("m0_6").eval()
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        reference = backbone(x)
        ours = reparameterize(copy.deepcopy(backbone))(x)
        mmcv_fused = fuse_conv_bn(copy.deepcopy(backbone))(x)
    for ref, fused in zip(reference, ours):
        assert torch.allclose(fused, ref, atol=1e-4 * ref.abs().max().item())
    # mmcv folds RepVGGDW's outer BN into its 1x1 branch only: the very reason the tools never use it
    assert (mmcv_fused[-1] - reference[-1]).abs().max() > 0.1 * reference[-1].abs().max()


# --- init_cfg: every checkpoint layout ---------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["official_imagenet", "timm", "zoo_name", "mm_checkpoint"])
def test_init_cfg_pretrained_accepts_every_layout(tmp_path, layout):
    source = randomize_batchnorm(RepViT("m0_6", distillation=True))
    state = source.state_dict()
    path = tmp_path / "weights.pth"
    if layout == "official_imagenet":
        torch.save({"model": state, "epoch": 299}, path)
    elif layout == "timm":
        torch.save(official_to_timm(state, "m0_6"), path)
    elif layout == "zoo_name":
        path = cache_dir() / ZOO["repvit_m0_6_distill_300e"].filename
        path.parent.mkdir(parents=True)
        torch.save({"model": state}, path)
    else:
        torch.save({"meta": {}, "state_dict": {**{f"backbone.{k}": v for k, v in state.items()
                                                if not k.startswith("classifier")},
                                             "neck.fpn_convs.0.conv.weight": torch.zeros(1)}}, path)
    spec = "repvit_m0_6_distill_300e" if layout == "zoo_name" else str(path)
    backbone = RepViTBackbone("m0_6", init_cfg=dict(type="Pretrained", checkpoint=spec))
    backbone.init_weights()
    own = backbone.state_dict()
    assert all(torch.equal(own[k], state[k]) for k in own)


def test_init_cfg_runs_through_the_detector_init_chain(tmp_path):
    """mmengine's BaseModule.init_weights of the detector reaches the backbone's override."""
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    state = randomize_batchnorm(RepViT("m0_6", distillation=True)).state_dict()
    torch.save({"model": state}, tmp_path / "imagenet.pth")
    cfg = Config.fromfile(TINY_DET)
    cfg.model.backbone.init_cfg = dict(type="Pretrained", checkpoint=str(tmp_path / "imagenet.pth"))
    init_default_scope("mmdet")
    detector = MODELS.build(cfg.model)
    detector.init_weights()
    own = detector.backbone.state_dict()
    assert all(torch.equal(own[k], state[k]) for k in own)


def test_init_cfg_mismatch_names_the_keys(tmp_path):
    state = RepViT("m0_9", num_classes=0).state_dict()
    torch.save(state, tmp_path / "m0_9.pth")
    backbone = RepViTBackbone("m0_6", init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "m0_9.pth")))
    with pytest.raises(CheckpointError, match="features"):
        backbone.init_weights()


# --- every full config builds and feeds the neck the official channels and strides ------------------------

def _forward_through_neck(cfg, height: int = 96, width: int = 128):
    from mmengine.registry import init_default_scope

    scope = cfg.default_scope
    init_default_scope(scope)
    registry = __import__(f"{scope}.registry", fromlist=["MODELS"]).MODELS
    cfg.model.backbone.init_cfg = None  # weights cannot be downloaded in tests
    model = registry.build(cfg.model).eval()
    seen = {}
    model.neck.register_forward_pre_hook(lambda _, inputs: seen.update(neck=inputs[0]))
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8)
    meta = dict(img_shape=(height, width), ori_shape=(height, width), scale_factor=(1.0, 1.0), img_id=0)
    if scope == "mmdet":
        from mmdet.structures import DetDataSample

        sample = DetDataSample(metainfo=meta)
    else:
        from mmseg.structures import SegDataSample

        sample = SegDataSample(metainfo=meta)
    with torch.no_grad():
        results = model.test_step(dict(inputs=[image], data_samples=[sample]))
    return model, seen["neck"], results[0]


@pytest.mark.parametrize("name", list(FULL_CONFIGS))
def test_full_config_builds_and_runs(name):
    from mmengine.config import Config

    arch, channels = FULL_CONFIGS[name]
    cfg = Config.fromfile(ROOT / "configs" / name)
    backbone = cfg.model.backbone
    det = cfg.default_scope == "mmdet"
    assert backbone.type == "RepViT" and backbone.arch == arch and backbone.norm_eval is True
    assert tuple(backbone.out_indices) == OFFICIAL_TAPS[arch][0 if det else 1]
    assert backbone.init_cfg == dict(type="Pretrained", checkpoint=f"repvit_{arch}_distill_300e")
    assert "repvit_plugins.mm" in cfg.custom_imports.imports
    optimizer = cfg.optim_wrapper.optimizer
    assert optimizer.type == "AdamW" and optimizer.lr == 2e-4
    if det:  # the official Mask R-CNN 1x recipe
        assert optimizer.weight_decay == 0.05 and cfg.train_cfg.max_epochs == 12
        warmup, steps = cfg.param_scheduler
        assert (warmup.type, warmup.end, warmup.by_epoch) == ("LinearLR", 500, False)
        assert steps.milestones == [8, 11] and cfg.train_dataloader.batch_size == 2
        assert cfg.auto_scale_lr == dict(enable=True, base_batch_size=16)
        assert cfg.train_pipeline[2].scale == (1333, 800)
    else:  # the official Semantic FPN 40k recipe
        assert optimizer.weight_decay == 1e-4 and cfg.train_cfg.max_iters == 40000
        (poly,) = cfg.param_scheduler
        assert (poly.type, poly.power, poly.eta_min, poly.end) == ("PolyLR", 0.9, 1e-6, 40000)
        assert cfg.train_dataloader.batch_size == 4 and cfg.crop_size == (512, 512)
        assert cfg.auto_scale_lr == dict(enable=True, base_batch_size=32)
    model, neck_inputs, result = _forward_through_neck(cfg)
    assert [t.shape[1] for t in neck_inputs] == channels == model.backbone.out_channels
    assert [tuple(t.shape[-2:]) for t in neck_inputs] == [(96 // s, 128 // s) for s in (4, 8, 16, 32)]
    if det:
        assert {"bboxes", "scores", "masks"} <= set(result.pred_instances.keys())
    else:
        assert tuple(result.pred_sem_seg.data.shape[-2:]) == (96, 128)


# --- checkpoint safety --------------------------------------------------------------------------------------------

class _Arbitrary:
    """Not allow-listed: a pickle holding it must still be refused."""


def test_runner_checkpoints_load_with_weights_only(tmp_path):
    import numpy as np
    from mmengine.logging import HistoryBuffer, MessageHub

    hub = MessageHub.get_instance("repvit_safety_test")
    for value in (1.0, 0.5):
        hub.update_scalar("train/loss", value)
    hub.update_info("iter", np.int64(3))
    path = tmp_path / "runner.pth"
    torch.save({"meta": {"seed": 0, "mean": np.float64(0.25), "array": np.arange(3)},
                "message_hub": hub.state_dict(), "state_dict": {"w": torch.ones(2)}}, path)
    assert not [g for g in torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
                if g not in {f"{o.__module__}.{getattr(o, '__qualname__', o.__name__)}"
                             for o in rmm.checkpoint_safety.mmengine_safe_globals()}]
    loaded = torch.load(path, weights_only=True)
    assert isinstance(loaded["message_hub"]["log_scalars"]["train/loss"], HistoryBuffer)
    assert loaded["message_hub"]["log_scalars"]["train/loss"].mean() == 0.75
    torch.save({"evil": _Arbitrary()}, tmp_path / "evil.pth")
    with pytest.raises(pickle.UnpicklingError):
        torch.load(tmp_path / "evil.pth", weights_only=True)


# --- converter for the official mmdet 2.x / mmseg 0.x checkpoints ------------------------------------------------

def _old_checkpoint(cfg_path: Path, meta: dict) -> dict:
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope

    cfg = Config.fromfile(cfg_path)
    init_default_scope(cfg.default_scope)
    model = MODELS.build(cfg.model)
    state = {k: torch.randn_like(v.float()).to(v.dtype) if v.is_floating_point() else v
             for k, v in model.state_dict().items()}
    return {"meta": {"config": "model = dict(type='MaskRCNN', ...)", "epoch": 12, "iter": 88000,
                     "mmcv_version": "1.7.1", **meta},
            "state_dict": state, "optimizer": {"state": {}, "param_groups": [{"lr": 2e-6, "params": [0, 1]}]}}


@pytest.mark.parametrize("kind", ["mmdet2", "mmseg0"])
def test_convert_official_checkpoint(tmp_path, kind):
    if kind == "mmdet2":
        cfg_path = TINY_DET
        meta = {"mmdet_version": "2.28.1", "CLASSES": ("square", "disc")}
    else:
        cfg_path = ROOT / "configs/tests/fpn_repvit-m0.6_tiny-synthetic.py"
        meta = {"mmseg_version": "0.30.0", "CLASSES": ("background", "square", "disc"),
                "PALETTE": [[128, 128, 128], [220, 60, 40], [40, 90, 220]]}
    old = _old_checkpoint(cfg_path, meta)
    torch.save(old, tmp_path / "old.pth")
    dst = load_tool("convert_mm_checkpoint").main(
        [str(tmp_path / "old.pth"), str(tmp_path / "new.pth"), "--config", str(cfg_path)])
    new = load_checkpoint_file(dst)
    assert set(new) == {"meta", "state_dict"}  # optimizer and the 2.x config text are gone
    assert new["meta"]["dataset_meta"]["classes"] == meta["CLASSES"]
    assert new["meta"]["converted_from"]["mmcv_version"] == "1.7.1"
    if "PALETTE" in meta:
        assert new["meta"]["dataset_meta"]["palette"] == [tuple(c) for c in meta["PALETTE"]]
    assert list(new["state_dict"]) == list(old["state_dict"])
    assert all(torch.equal(new["state_dict"][k], v) for k, v in old["state_dict"].items())

    del old["state_dict"]["backbone.features.3.channel_mixer.m.0.c.weight"]
    torch.save(old, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match="features.3.channel_mixer.m.0.c.weight"):
        load_tool("convert_mm_checkpoint").main(
            [str(tmp_path / "broken.pth"), str(tmp_path / "x.pth"), "--config", str(cfg_path)])
