"""The SAM zoo: every entry builds, loads its official layout strictly, refuses another's, and matches its reference."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from repvit_plugins.models.sam_registry import SAM_MODELS, build_encoder, build_sam, repvit_sam_name, sam_model
from repvit_plugins.sam import SamSegmenter
from repvit_plugins.weights.checkpoint_io import CheckpointError

from .conftest import randomize_batchnorm


@pytest.mark.parametrize("name", sorted(SAM_MODELS))
def test_every_entry_builds(name):
    spec = sam_model(name)
    if name in ("sam_vit_l", "sam_vit_h"):  # structure and sizes without allocating ViT-H's 2.5 GB
        with torch.device("meta"):
            sam = build_sam(name, device="meta")
    else:
        sam = build_sam(name)
        assert sam.pixel_mean.flatten().tolist() == pytest.approx(spec.pixel_mean)
        assert sam.pixel_std.flatten().tolist() == pytest.approx(spec.pixel_std)
    assert sam.image_encoder.img_size == spec.img_size == 1024
    if name == "repvit_sam":  # the paper's encoder size
        assert sum(p.numel() for p in sam.image_encoder.parameters()) / 1e6 == pytest.approx(23.2, abs=0.1)


def test_vit_entries_have_segment_anything_own_layout():
    from segment_anything import sam_model_registry

    for name, kind in (("sam_vit_b", "vit_b"), ("sam_vit_l", "vit_l"), ("sam_vit_h", "vit_h")):
        with torch.device("meta"):
            ours, theirs = build_sam(name, device="meta").state_dict(), sam_model_registry[kind]().state_dict()
        assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}


def test_mobile_sam_has_mobile_sam_own_layout_and_timm_is_left_alone():
    import timm
    from mobile_sam import sam_model_registry

    before = timm.models._registry._model_entrypoints["tiny_vit_5m_224"]
    ours, theirs = build_sam("mobile_sam").state_dict(), sam_model_registry["vit_t"]().state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    assert timm.models._registry._model_entrypoints["tiny_vit_5m_224"] is before


def test_official_layout_loads_strictly_and_another_entry_is_refused(tmp_path):
    sam = randomize_batchnorm(build_sam("repvit_sam_m0_6", img_size=256))
    path = tmp_path / "student.pt"
    torch.save(sam.state_dict(), path)  # the flat image_encoder.* / prompt_encoder.* / mask_decoder.* layout
    loaded = build_sam("repvit_sam_m0_6", path, img_size=256)
    for key, value in sam.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with pytest.raises(CheckpointError, match=r"(?s)unexpected keys.*image_encoder\.features\.\d+"):
        build_sam("sam_vit_b", path, img_size=256)
    with pytest.raises(ValueError, match="no official checkpoint"):
        build_sam("repvit_sam_m0_9", pretrained=True)
    with pytest.raises(ValueError, match="unknown SAM model 'sam_vit_x'.*mobile_sam"):
        build_sam("sam_vit_x")


def test_students_and_arch_names():
    assert repvit_sam_name("m2_3") == "repvit_sam" and repvit_sam_name("M0.9") == "repvit_sam_m0_9"
    encoder = build_encoder("repvit_sam_m0_6", 128)
    assert encoder(torch.zeros(1, 3, 128, 128)).shape == (1, 256, 8, 8)


def _side_by_side(ours, reference, predictor_class, image):
    """Our segmenter and the reference package's predictor on the same weights, both with ``image`` set."""
    reference.load_state_dict(ours.state_dict())
    segmenter = SamSegmenter(sam=ours, fuse=False, channels_last=False)
    segmenter.set_image(image)
    predictor = predictor_class(reference.eval())
    predictor.set_image(image)
    return segmenter, predictor


@pytest.mark.slow
def test_mobile_sam_boxes_and_points_equal_mobile_sam_own_predictor():
    from mobile_sam import SamPredictor, sam_model_registry

    image = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    segmenter, predictor = _side_by_side(build_sam("mobile_sam"), sam_model_registry["vit_t"](), SamPredictor, image)
    boxes = np.array([[20, 30, 200, 250], [150, 40, 390, 290]], dtype=np.float32)
    masks, scores = segmenter.predict_boxes(boxes)
    for box, mask, score in zip(boxes, masks, scores):
        ref_masks, ref_scores, _ = predictor.predict(box=box, multimask_output=False)
        assert (ref_masks[0] != mask).mean() < 1e-3
        assert score == pytest.approx(float(ref_scores[0]), abs=1e-4)
    points, labels = np.array([[100.0, 120.0]]), np.array([1])
    ours_masks, ours_scores, _ = segmenter.predict_points(points, labels)
    ref_masks, ref_scores, _ = predictor.predict(point_coords=points, point_labels=labels, multimask_output=True)
    np.testing.assert_allclose(ours_scores, ref_scores, atol=1e-4)
    assert (ours_masks != ref_masks).mean() < 1e-3


def test_download_takes_sam_model_names():
    from repvit_plugins.commands.download import _zoo_name
    from repvit_plugins.weights.zoo import ZOO

    for name, spec in SAM_MODELS.items():
        if spec.checkpoint:
            assert _zoo_name(name) in ZOO
    assert _zoo_name("sam_vit_b") == "sam_vit_b_01ec64" and _zoo_name("repvit_m1_1_distill_300e") == \
        "repvit_m1_1_distill_300e"


def test_teachers_come_from_the_registry():
    from repvit_plugins.distill.teachers import TEACHER_TYPES, build_teacher

    assert {"vit_b", "vit_h", "repvit_sam", "mobile_sam", "sam_vit_l"} <= set(TEACHER_TYPES)
    teacher = build_teacher("repvit_sam", arch="m0_6", img_size=128)
    assert teacher.image_encoder.arch_name == "m0_6" and not any(p.requires_grad for p in teacher.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["efficientvit_sam_l0", "efficientvit_sam_xl0"])
def test_efficientvit_sam_equals_its_own_predictor(name):
    """EfficientViT-SAM (512 or 1024 encoder input, prompts in the 1024 frame) against the package's predictor."""
    from efficientsam.models.efficientvit.sam import EfficientViTSamPredictor
    from efficientsam.sam_model_zoo import create_efficientvit_sam_model

    image = np.random.default_rng(1).integers(0, 255, (240, 360, 3), dtype=np.uint8)
    segmenter, predictor = _side_by_side(randomize_batchnorm(build_sam(name)),
                                         create_efficientvit_sam_model(name.replace("_", "-"), pretrained=False),
                                         EfficientViTSamPredictor, image)
    np.testing.assert_allclose(segmenter.get_image_embedding().numpy(), predictor.features.numpy(), atol=1e-4)
    box = np.array([30, 20, 300, 200], dtype=np.float32)
    masks, scores = segmenter.predict_boxes(box[None])
    ref_masks, ref_scores, _ = predictor.predict(box=box, multimask_output=False)
    assert (ref_masks[0] != masks[0]).mean() < 1e-3
    assert scores[0] == pytest.approx(float(ref_scores[0]), abs=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("name, size", [("mobile_sam", None), ("efficientvit_sam_l0", None), ("sam_vit_b", 256)])
def test_onnxruntime_encoder_of_every_family(name, size):
    """The exported encoder in onnxruntime gives torch's embedding (EfficientViT-SAM L0 at its own 512 input)."""
    pytest.importorskip("onnxruntime")
    sam = build_sam(name, img_size=size)
    image = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    reference = SamSegmenter(sam=build_sam(name, sam.state_dict(), img_size=size), fuse=False, channels_last=False)
    reference.set_image(image)
    runtime = SamSegmenter(sam=sam, backend="onnxruntime")
    runtime.set_image(image)
    np.testing.assert_allclose(runtime.get_image_embedding(), reference.get_image_embedding(), atol=1e-4)


def test_stability_scoring_selects_masks_as_edge_sam_does():
    from segment_anything.utils.amg import calculate_stability_score

    sam = randomize_batchnorm(build_sam("repvit_sam_m0_6", img_size=256))
    image = np.random.default_rng(2).integers(0, 255, (100, 120, 3), dtype=np.uint8)
    by_iou = SamSegmenter(sam=sam, fuse=False, channels_last=False)
    by_iou.set_image(image)
    _, iou_scores, low_res = by_iou.predict_points(np.array([[60.0, 50.0]]), np.array([1]))
    sam.mask_scoring = "stability"
    by_stability = SamSegmenter(sam=sam, fuse=False, channels_last=False)
    by_stability.set_image(image)
    _, scores, _ = by_stability.predict_points(np.array([[60.0, 50.0]]), np.array([1]))
    expected = calculate_stability_score(torch.as_tensor(low_res), sam.mask_threshold, 1.0).numpy()
    np.testing.assert_allclose(scores, expected, atol=1e-6)
    assert not np.allclose(scores, iou_scores)


EDGE_SAM_M1_SE_BLOCKS = [1, 5, 9, 11, 13, 15, 17, 19, 21, 25]
"""``features`` indices with squeeze-excitation in EdgeSAM's ``m1_cfgs`` (SE flag 1, +1 for the stem)."""


def test_edge_sam_encoder_is_the_first_version_m1_with_edge_sams_layout(tmp_path):
    sam = randomize_batchnorm(build_sam("edge_sam"))
    encoder = sam.image_encoder
    state = sam.state_dict()
    assert len(encoder.features) == 27 and encoder.arch_name == "m1"
    se = sorted({int(k.split(".")[2]) for k in state if k.endswith("token_mixer.1.fc1.weight")})
    assert se == EDGE_SAM_M1_SE_BLOCKS
    for key, shape in (("image_encoder.fuse_stage2.weight", (256, 192, 1, 1)),
                       ("image_encoder.fuse_stage3.op_list.0.weight", (256, 384, 1, 1)),
                       ("image_encoder.features.1.token_mixer.0.conv1.c.weight", (48, 1, 1, 1)),
                       ("image_encoder.neck.0.weight", (256, 256, 1, 1))):
        assert tuple(state[key].shape) == shape, key
    assert not any(k.startswith("image_encoder.features.1.token_mixer.0.bn.") for k in state)  # legacy RepVGG-DW
    assert sam.mask_scoring == "stability"
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():  # the fusion: stride 16 + upsampled stride 32, then the neck
        feats = x
        for i, block in enumerate(encoder.features):
            feats = block(feats)
            if i == 23:
                s16 = feats
        up = torch.nn.functional.interpolate(encoder.fuse_stage3.op_list[0](feats), scale_factor=2, mode="bicubic")
        torch.testing.assert_close(encoder(x), encoder.neck(encoder.fuse_stage2(s16) + up))
    path = tmp_path / "edge_sam.pth"
    torch.save(state, path)
    build_sam("edge_sam_3x", path)  # the official layout loads strictly
    with pytest.raises(CheckpointError, match=r"(?s)unexpected keys.*conv1\.c\.weight.*shape mismatches"):
        build_sam("repvit_sam", path)


def test_edge_sam_fuses_to_the_same_embedding():
    from repvit_plugins.models import reparameterize

    encoder = randomize_batchnorm(build_sam("edge_sam", img_size=256)).image_encoder
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        reference = encoder(x)
        fused = reparameterize(encoder)(x)
    torch.testing.assert_close(fused, reference, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_benchmark_sam_zoo_smoke_run_covers_every_entry(tmp_path):
    """tools/benchmark_sam.py --zoo --tiny: every entry, every encoder path measured or given its reason.

    Tolerances: the int8 graphs of these tiny random encoders keep box masks at mean IoU > 0.5 with float's (the
    RepViT-SAM int8 test's own floor); onnxruntime float matches eager to 1e-3 of the embedding's scale.
    """
    import json

    from repvit_plugins.sam.zoo_benchmark import PATHS

    from .conftest import run_tool

    done = run_tool("benchmark_sam.py", "--zoo", "--tiny", "--zoo-iters", "1", "--zoo-warmup", "0",
                    "--decoder-iters", "1", "--boxes", "2", "--json", tmp_path / "zoo.json")
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / "zoo.json").read_text())["results"]
    assert sorted(results) == sorted(SAM_MODELS)
    assert "| `repvit_sam` |" in done.stdout and "COCO AP (published)" in done.stdout
    for name, r in results.items():
        paths = r["paths"]
        assert list(paths) == list(PATHS), name
        assert r["params"] > 0 and r["macs"] > 0 and r["decoder_ms_per_box"] > 0, name
        for path in ("eager", "channels_last", "onnxruntime", "int8"):
            assert paths[path].get("s", 0) > 0, (name, path, paths[path])
        assert ("s" in paths["fused"]) == (sam_model(name).family in ("repvit", "edge_sam")), name
        assert paths["onnxruntime"]["error"] < 1e-3, name
        assert 0.5 < paths["int8"]["mask_iou"] <= 1.0, name
    assert results["repvit_sam"]["zero_shot_coco_ap"] == 44.4 and results["sam_vit_h"]["zero_shot_coco_ap"] == 46.8
