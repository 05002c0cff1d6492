"""TimmBackbone: timm's features_only outputs, freezing, safe init_cfg, fixed-size attention, full configs."""
from __future__ import annotations

import copy

import pytest
import torch

pytest.importorskip("mmengine")
pytest.importorskip("mmdet")
pytest.importorskip("mmseg")
timm = pytest.importorskip("timm")

from repvit_plugins.mm import RepViTBackbone, TimmBackbone  # noqa: E402
from repvit_plugins.models.timm_features import feature_channels, feature_info, feature_strides  # noqa: E402
from repvit_plugins.weights.checkpoint_io import CheckpointError  # noqa: E402

from ._mm_fixtures import ROOT  # noqa: E402
from .conftest import randomize_batchnorm  # noqa: E402
from .test_mm_backbone import _bn_layers, _forward_through_neck  # noqa: E402

TIMM_CONFIGS = {  # name in the config files -> timm model
    "efficientvit-m5": "efficientvit_m5", "efficientvit-b1": "efficientvit_b1",
    "efficientformer-l1": "efficientformer_l1", "efficientformerv2-s2": "efficientformerv2_s2",
    "mobilevitv2-1.0": "mobilevitv2_100", "efficientnetv2-b3": "tf_efficientnetv2_b3",
    "tinyvit-11m": "tiny_vit_11m_224",
}
FULL_TIMM_CONFIGS = [(f"mask_rcnn/mask-rcnn_{n}_fpn_1x_coco.py", m) for n, m in TIMM_CONFIGS.items()] + [
    (f"sem_fpn/fpn_{n}_8xb4-40k_ade20k-512x512.py", m) for n, m in TIMM_CONFIGS.items()]
# one of each feature wrapper timm uses: FeatureListNet, FeatureGetterNet, EfficientNetFeatures
SMALL = [("efficientvit_m0", 3), ("efficientformer_l1", 4), ("tf_efficientnetv2_b0", 4), ("mobilevitv2_050", 4)]


def test_registered_in_mmdet_and_mmseg():
    from mmdet.registry import MODELS as DET
    from mmseg.registry import MODELS as SEG

    assert DET.module_dict["TimmBackbone"] is TimmBackbone and SEG.module_dict["TimmBackbone"] is TimmBackbone
    backbone = SEG.build(dict(type="TimmBackbone", model_name="efficientvit_b0"))
    assert backbone.out_channels == [16, 32, 64, 128] and backbone.strides == [4, 8, 16, 32]


@pytest.mark.parametrize("name,levels", SMALL)
def test_outputs_equal_timm_features_only(name, levels):
    ours = randomize_batchnorm(TimmBackbone(name, out_indices=levels)).eval()
    theirs = timm.create_model(name, features_only=True, out_indices=levels).eval()
    theirs.load_state_dict(ours.model.state_dict(), strict=True)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        mine, reference = ours(x), theirs(x)
    assert isinstance(mine, tuple) and len(mine) == len(reference) == levels
    assert all(torch.equal(a, b) for a, b in zip(mine, reference))
    assert ours.out_channels == theirs.feature_info.channels() == [t.shape[1] for t in mine]
    assert ours.strides == theirs.feature_info.reduction()
    assert ours.out_channels == feature_channels(name, levels) and ours.strides == feature_strides(name, levels)


def test_out_indices_pick_levels_and_feature_info_is_timms():
    backbone = TimmBackbone("tf_efficientnetv2_b0", out_indices=(1, -1))
    assert backbone.out_indices == (1, 4) and backbone.strides == [4, 32]
    assert backbone.feature_info == feature_info("tf_efficientnetv2_b0", (1, -1))
    assert feature_info("tf_efficientnetv2_b0", (1, -1))[0] == dict(num_chs=32, reduction=4, module="blocks.1")


def test_repvit_backbone_reports_feature_info_the_same_way():
    backbone = RepViTBackbone("m1_1")
    assert backbone.feature_info == [dict(num_chs=c, reduction=r, module=f"features.{i}") for i, c, r in
                                     zip((2, 6, 20, 24), (64, 128, 256, 512), (4, 8, 16, 32))]
    assert backbone.out_channels == [64, 128, 256, 512] and backbone.strides == [4, 8, 16, 32]


def test_frozen_stages_and_norm_eval():
    backbone = randomize_batchnorm(TimmBackbone("efficientvit_b0", frozen_stages=2, norm_eval=False)).train()
    frozen = {n for n, p in backbone.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith(("model.stem", "model.stages_0.", "model.stages_1.")) for n in frozen)
    assert any(n.startswith("model.stages_1.") for n in frozen)
    assert all(p.requires_grad for n, p in backbone.named_parameters() if n.startswith("model.stages_2."))
    before = copy.deepcopy(backbone.state_dict())
    optimizer = torch.optim.SGD([p for p in backbone.parameters() if p.requires_grad], lr=0.1)
    sum(t.square().mean() for t in backbone(torch.randn(2, 3, 64, 64))).backward()
    optimizer.step()
    after = backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith(("model.stem", "model.stages_0.")))
    assert not torch.equal(before["model.stages_3.blocks.0.main.inverted_conv.conv.weight"],
                           after["model.stages_3.blocks.0.main.inverted_conv.conv.weight"])
    assert all(not bn.training for bn in _bn_layers(TimmBackbone("efficientvit_b0").train()))  # norm_eval=True
    assert TimmBackbone("efficientvit_b0", frozen_stages=0).frozen_modules  # the stem
    with pytest.raises(ValueError, match="frozen_stages"):
        TimmBackbone("efficientvit_m0", out_indices=3, frozen_stages=4)


@pytest.mark.parametrize("layout", ["timm", "model", "mm_checkpoint"])
@pytest.mark.parametrize("name,levels", [("efficientvit_m0", 3), ("efficientformer_l1", 4)])
def test_init_cfg_pretrained_loads_timm_and_plain_layouts(tmp_path, layout, name, levels):
    full = randomize_batchnorm(timm.create_model(name))
    if layout == "mm_checkpoint":
        source = randomize_batchnorm(TimmBackbone(name, out_indices=levels), seed=1)
        payload = {"meta": {}, "state_dict": {**{f"backbone.{k}": v for k, v in source.state_dict().items()},
                                              "neck.lateral_convs.0.conv.weight": torch.zeros(1)}}
    else:
        payload = full.state_dict() if layout == "timm" else {"model": full.state_dict(), "epoch": 299}
    torch.save(payload, tmp_path / "weights.pth")
    backbone = TimmBackbone(name, out_indices=levels,
                            init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "weights.pth")))
    backbone.init_weights()
    if layout == "mm_checkpoint":
        assert all(torch.equal(v, source.state_dict()[k]) for k, v in backbone.state_dict().items())
        return
    reference = timm.create_model(name, features_only=True, out_indices=levels, pretrained=False).eval()
    reference.load_state_dict(backbone.model.state_dict())
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():  # the stage outputs of the classifier whose weights were saved
        stages = full.eval().forward_intermediates(x, indices=levels, intermediates_only=True)
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(backbone.eval()(x), stages))


def test_init_cfg_mismatch_names_the_keys(tmp_path):
    state = timm.create_model("efficientvit_m0").state_dict()
    state.pop("stages.1.blocks.0.dw0.m.conv.weight")
    torch.save(state, tmp_path / "broken.pth")
    backbone = TimmBackbone("efficientvit_m0", out_indices=3,
                            init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "broken.pth")))
    with pytest.raises(CheckpointError, match="stages_1.blocks.0.dw0.m.conv.weight"):
        backbone.init_weights()


@pytest.mark.parametrize("name", ["efficientformer_l1", "efficientformerv2_s2"])
def test_fixed_size_attention_runs_at_img_size(tmp_path, name):
    full = randomize_batchnorm(timm.create_model(name)).eval()
    torch.save({"model": full.state_dict()}, tmp_path / "imagenet.pth")
    init = dict(type="Pretrained", checkpoint=str(tmp_path / "imagenet.pth"))
    same = TimmBackbone(name, img_size=224, init_cfg=init)
    same.init_weights()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():  # at the trained size nothing is resampled: the stage outputs of the classifier
        stages = full.forward_intermediates(x, intermediates_only=True)
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(same.eval()(x), stages))
    larger = TimmBackbone(name, img_size=(160, 256), init_cfg=init)
    larger.init_weights()
    with torch.no_grad():
        out = larger.eval()(torch.randn(1, 3, 150, 250))  # padded to 160x256, cropped back
    assert [tuple(t.shape[-2:]) for t in out] == [(38, 63), (19, 32), (10, 16), (5, 8)]
    assert all(torch.isfinite(t).all() for t in out)
    with pytest.raises(ValueError, match="img_size"):
        larger(torch.randn(1, 3, 192, 256))


@pytest.mark.parametrize("name,model_name", FULL_TIMM_CONFIGS)
def test_full_timm_config_builds_and_feeds_the_neck(name, model_name):
    from mmengine.config import Config

    cfg = Config.fromfile(ROOT / "configs" / name)
    backbone = cfg.model.backbone
    assert backbone.type == "TimmBackbone" and backbone.model_name == model_name and backbone.norm_eval is True
    assert backbone.init_cfg.checkpoint.startswith(f"pretrain/{model_name}.")
    assert cfg.optim_wrapper.optimizer.lr == 2e-4  # the RepViT recipe it inherits
    levels = backbone.out_indices
    strides = feature_strides(model_name, levels)
    assert list(cfg.model.neck.in_channels) == feature_channels(model_name, levels)
    if cfg.default_scope == "mmdet":
        assert cfg.model.rpn_head.anchor_generator.strides == [strides[0] * 2 ** i for i in range(5)]
        assert cfg.model.roi_head.bbox_roi_extractor.featmap_strides == [strides[0] * 2 ** i for i in range(4)]
    else:
        assert cfg.model.decode_head.feature_strides == [strides[0] * 2 ** i for i in range(4)]
    if "img_size" in backbone:  # built for (1344, 1344) / (512, 512); a smaller build keeps the test fast
        assert tuple(backbone.img_size) == ((1344, 1344) if cfg.default_scope == "mmdet" else (512, 512))
        backbone.img_size = (128, 192)
    model, neck_inputs, result = _forward_through_neck(cfg, 128, 192)
    assert [t.shape[1] for t in neck_inputs] == model.backbone.out_channels
    assert [tuple(t.shape[-2:]) for t in neck_inputs] == [(-(-128 // s), -(-192 // s)) for s in strides]
    assert strides == ([16, 32, 64] if model_name == "efficientvit_m5" else [4, 8, 16, 32])
    if cfg.default_scope == "mmdet":
        assert {"bboxes", "scores", "masks"} <= set(result.pred_instances.keys())
    else:
        assert tuple(result.pred_sem_seg.data.shape[-2:]) == (128, 192)
