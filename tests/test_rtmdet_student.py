"""RTMDet-Ins students with RepViT backbones: the configs, the generated autolabel config, fused inference.

Models are random (``init_cfg`` set to ``None``: nothing is downloaded); BatchNorm gets trained-looking statistics
so that fusing has something to fold, and the classification biases are zeroed so that a random head scores
about 0.5 everywhere and NMS, mask decoding and class matching all have instances to work on.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from .conftest import randomize_batchnorm

pytest.importorskip("mmdet")

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "rtmdet_ins"
SIZE = 128


def _build(cfg) -> torch.nn.Module:
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope

    init_default_scope("mmdet")
    model = MODELS.build(cfg.model)
    model.init_weights()
    randomize_batchnorm(model)
    with torch.no_grad():
        for name, param in model.bbox_head.named_parameters():
            if name.startswith("rtm_cls") and name.endswith("bias"):
                param.zero_()
    return model.eval()


def _photo(seed: int = 0, height: int = SIZE, width: int = SIZE) -> np.ndarray:
    """An RGB photo of two flat shapes on noise (something for random features to respond to)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(90, 160, (height, width, 3), dtype=np.uint8)
    image[height // 5: height // 2, width // 6: width // 2] = (220, 60, 40)
    image[height // 2: 4 * height // 5, width // 2: 5 * width // 6] = (40, 90, 220)
    return image


def _flat(outputs) -> list[torch.Tensor]:
    """Each head output (a tensor, or a list of one per level) as one flat tensor."""
    return [torch.cat([t.flatten() for t in o]) if isinstance(o, (list, tuple)) else o.flatten() for o in outputs]


@pytest.mark.parametrize("arch", ["m0.6", "m0.9", "m1.1"])
def test_configs_tap_strides_8_16_32_and_run(arch):
    from mmengine.config import Config

    from repvit_plugins.grounding.mmdet_closed_set import inference_pipeline
    from repvit_plugins.models.repvit import ARCHS

    cfg = Config.fromfile(str(CONFIGS / f"rtmdet-ins_repvit-{arch}_8xb32-300e_coco.py"))
    key = arch.replace(".", "_")
    backbone = cfg.model.backbone
    assert backbone.type == "RepViT" and backbone.arch == key
    assert backbone.init_cfg == dict(type="Pretrained", checkpoint=f"repvit_{key}_distill_300e")
    assert tuple(backbone.out_indices) == ARCHS[key].det_out_indices[1:]
    assert cfg.model.data_preprocessor.bgr_to_rgb  # RepViT's ImageNet weights are RGB
    assert cfg.model.bbox_head.type == "RTMDetInsSepBNHead" and cfg.model.bbox_head.num_classes == 80
    cfg.model.backbone.init_cfg = None  # random weights, nothing downloaded
    model = _build(cfg)
    assert model.backbone.strides == [8, 16, 32]
    assert model.neck.in_channels == model.backbone.out_channels
    from mmengine.dataset import pseudo_collate

    pipeline = inference_pipeline(cfg, single_stage=True)
    data = pseudo_collate([pipeline(dict(img=_photo()[..., ::-1].copy(), img_id=0))])
    with torch.no_grad():
        (sample,) = model.test_step(data)
    pred = sample.pred_instances
    assert len(pred) > 0 and pred.masks.shape[1:] == (SIZE, SIZE) and pred.masks.dtype == torch.bool


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    """The generated RTMDet-Ins config (M0.6, class ``shape``, 128 px) and a random checkpoint of it."""
    from mmengine.config import Config

    from repvit_plugins.jobs.train_config import TrainingSchedule, write_training_config

    root = tmp_path_factory.mktemp("rtmdet_student")
    schedule = TrainingSchedule(arch="m0_6", pretrained=False, epochs=12, image_size=(SIZE,))
    config = write_training_config(root, ["shape"], 8, schedule, kind="rtmdet-ins")
    torch.manual_seed(0)
    model = _build(Config.fromfile(str(config)))
    checkpoint = root / "student.pth"
    torch.save({"state_dict": model.state_dict(), "meta": {"dataset_meta": {"classes": ("shape",)}}}, checkpoint)
    return config, checkpoint


def _detector(student, **kwargs):
    from repvit_plugins.grounding.mmdet_closed_set import MMDetClosedSetDetector

    config, checkpoint = student
    return MMDetClosedSetDetector(config, checkpoint, box_threshold=0.0, nms="none", max_detections=None,
                                  masks="detector", **kwargs)


def test_detector_equals_mmdets_inference_detector(student):
    from mmdet.apis import inference_detector

    detector = _detector(student, fuse=False, channels_last=False)
    assert detector.single_stage and detector.predicts_masks
    image = _photo(1)
    (found,) = detector.detect(image, "a shape.")
    reference = inference_detector(detector.model, np.ascontiguousarray(image[..., ::-1])).pred_instances
    order = torch.sort(reference.scores, descending=True, stable=True).indices
    assert len(found) == len(reference) > 10
    np.testing.assert_allclose(found.confidence, reference.scores[order].numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(found.xyxy, reference.bboxes[order].numpy(), rtol=0, atol=1e-4)
    np.testing.assert_array_equal(found.mask, reference.masks[order].numpy())
    # a threshold drops instances before their masks are decoded: the same instances as filtering afterwards
    threshold = float(np.median(found.confidence))
    (above,) = detector.detect(image, "a shape.", box_threshold=threshold)
    keep = found.confidence > threshold
    assert 0 < len(above) < len(found)
    np.testing.assert_array_equal(above.mask, found.mask[keep])


def test_fused_channels_last_student_equals_the_unfused_one(student):
    """RepViT fused with its own ``fuse()`` (not mmcv's conv-bn fusion), stored channels-last: same predictions."""
    plain = _detector(student, fuse=False, channels_last=False)
    fast = _detector(student)  # the pipeline's default: fused, channels-last
    assert sum(p.numel() for p in fast.model.parameters()) < sum(p.numel() for p in plain.model.parameters())
    images = [_photo(2), _photo(3, 96, SIZE)]  # a 4:3 photo too (padded to a multiple of 32, not a square)
    with torch.no_grad():
        for image in images:
            data = plain.model.data_preprocessor(
                {"inputs": [torch.from_numpy(image[..., ::-1].copy()).permute(2, 0, 1)]}, False)
            # the fused part: RepViT's three taps (measured: max error 6e-7 of each output's largest value)
            for a, b in zip(plain.model.backbone(data["inputs"]), fast.model.backbone(data["inputs"])):
                assert (a - b).abs().max() <= 1e-4 * a.abs().max(), ((a - b).abs().max(), a.abs().max())
            # and everything after it: class scores, box distances, mask kernels, mask features
            for a, b in zip(_flat(plain.model.bbox_head(plain.model.extract_feat(data["inputs"]))),
                            _flat(fast.model.bbox_head(fast.model.extract_feat(data["inputs"])))):
                assert (a - b).abs().max() <= 1e-4 * a.abs().max(), ((a - b).abs().max(), a.abs().max())
    a, b = plain.detect(images, "shape"), fast.detect(images, "shape")
    for x, y in zip(a, b):
        top = min(len(x), len(y), 20)
        np.testing.assert_allclose(x.xyxy[:top], y.xyxy[:top], atol=0.05)
        np.testing.assert_allclose(x.confidence[:top], y.confidence[:top], atol=1e-4)
        assert (x.mask[:top] != y.mask[:top]).mean() < 1e-3


def test_bf16_runs_the_network_in_bf16_and_post_processing_in_float32(student):
    """mmcv's NMS fails on bf16 boxes: under autocast the head's outputs go to float32 before post-processing."""
    fp32 = _detector(student)
    bf16 = _detector(student, precision="bf16")
    image = _photo(4)
    (a,), (b,) = fp32.detect(image, "shape"), bf16.detect(image, "shape")
    assert len(b) > 0 and b.xyxy.dtype == np.float32 and b.mask.dtype == bool
    # bf16 has 8 bits of mantissa: random-weight scores (all near 0.5) agree to about 1e-2
    assert abs(float(a.confidence.mean()) - float(b.confidence.mean())) < 0.02


def test_prompt_classes_the_student_lacks_name_both_sets(student):
    with pytest.raises(ValueError, match=r"the prompt asks for a dog, shape, but the detector knows shape; not a dog"):
        _detector(student).detect(_photo(), "a dog. shape.")


def test_a_foreign_or_missing_checkpoint_names_the_keys(student, tmp_path):
    from repvit_plugins.weights.checkpoint_io import CheckpointError

    config, checkpoint = student
    state = torch.load(checkpoint, weights_only=True)["state_dict"]
    del state["bbox_head.rtm_cls.0.bias"]
    state["roi_head.bbox_head.fc_cls.weight"] = torch.zeros(2, 2)  # a key of a Mask R-CNN
    state["backbone.features.0.0.c.weight"] = torch.zeros(1)
    foreign = tmp_path / "foreign.pth"
    torch.save({"state_dict": state}, foreign)
    with pytest.raises(CheckpointError) as err:
        _detector((config, foreign))
    message = str(err.value)
    assert "missing keys (1): bbox_head.rtm_cls.0.bias" in message
    assert "unexpected keys (1): roi_head.bbox_head.fc_cls.weight" in message
    assert "shape mismatches (1): backbone.features.0.0.c.weight: checkpoint (1,)" in message
    assert "tools/train.py" in message  # what to do next
    with pytest.raises(CheckpointError, match="no checkpoint file at .*nothing.pth"):
        _detector((config, tmp_path / "nothing.pth"))


def test_augmentation_scales_with_the_dataset():
    from repvit_plugins.jobs.train_config import rtmdet_augmentation

    tiny, small, mid, big = (rtmdet_augmentation(n, 100) for n in (8, 50, 500, 5000))
    assert (tiny.mosaic, tiny.mixup, tiny.switch_epoch) == (False, False, None)
    assert (small.mosaic, small.mixup, small.cache, small.switch_epoch) == (True, False, 40, 75)
    assert (mid.mosaic, mid.mixup, mid.switch_epoch) == (True, True, 75)
    assert (big.mosaic, big.mixup, big.switch_epoch) == (True, True, 93)  # the recipe's last 20 of 300 epochs


@pytest.mark.parametrize("num_train", [8, 300])
def test_generated_rtmdet_config_trains_on_the_dataset_with_scaled_augmentation(num_train, tmp_path):
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from repvit_plugins.jobs.train_config import TrainingSchedule, write_training_config

    path = write_training_config(tmp_path, ["dog", "cat", "cup"], num_train, TrainingSchedule(arch="m1_1"),
                                 kind="rtmdet-ins")
    assert path.name == "rtmdet-ins_repvit-m1.1_autolabel.py"
    cfg = Config.fromfile(str(path))
    assert cfg.image_size == (640, 640) and cfg.train_dataloader.batch_size == 8
    assert cfg.train_dataloader.dataset.metainfo.classes == ("dog", "cat", "cup")
    steps = [step.type for step in cfg.train_dataloader.dataset.pipeline]
    hooks = [hook.type for hook in cfg.custom_hooks]
    if num_train == 8:  # 1 step per epoch: 300 epochs, the plain pipeline throughout
        assert cfg.train_cfg.max_epochs == 300 and "CachedMosaic" not in steps and hooks == ["EMAHook"]
    else:  # 38 steps per epoch: 106 epochs, mosaic + mixup, the last quarter plain
        assert cfg.train_cfg.max_epochs == 106 and {"CachedMosaic", "CachedMixUp"} <= set(steps)
        assert hooks == ["EMAHook", "PipelineSwitchHook"] and cfg.custom_hooks[1].switch_epoch == 80
    assert cfg.optim_wrapper.optimizer.lr == pytest.approx(0.004 * (8 / 256) ** 0.5, rel=1e-2)
    assert cfg.model.backbone.init_cfg.checkpoint == "repvit_m1_1_distill_300e"
    cfg.model.backbone.init_cfg = None
    init_default_scope("mmdet")
    model = MODELS.build(cfg.model)
    assert model.backbone.out_indices == (6, 20, 24) and model.neck.in_channels == [128, 256, 512]
    assert model.bbox_head.num_classes == 3 and model.bbox_head.in_channels == 128  # rtmdet-ins_s width
