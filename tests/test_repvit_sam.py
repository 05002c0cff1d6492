"""RepViT-SAM model: encoder structure, timm parity, checkpoint layout, fusion, the fast mask decoder."""
from __future__ import annotations

import copy

import pytest
import torch

from repvit_plugins.models import build_repvit_sam, reparameterize
from repvit_plugins.models.repvit_keys import official_to_timm
from repvit_plugins.models.repvit_sam import RepViTSamEncoder
from repvit_plugins.sam.decoder import FastMaskDecoder
from repvit_plugins.weights.checkpoint_io import CheckpointError
from repvit_plugins.weights.zoo import ZOO, cache_dir

from ._sam_fixtures import SMALL, small_sam
from .conftest import randomize_batchnorm


def test_builds_segment_anything_sam_with_core_repvit():
    from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    from repvit_plugins.models.repvit import RepViTBlock

    sam = build_repvit_sam()
    assert isinstance(sam, Sam) and not sam.training
    assert isinstance(sam.prompt_encoder, PromptEncoder) and isinstance(sam.mask_decoder, MaskDecoder)
    assert isinstance(sam.mask_decoder.transformer, TwoWayTransformer)
    encoder = sam.image_encoder
    assert encoder.img_size == 1024 and isinstance(encoder.features[1], RepViTBlock)
    # the last downsample (320 -> 640) runs at stride 1: the only stride-1 downsample
    last_down = encoder.features[encoder.arch.stage_ends[2] + 1].token_mixer[0].c
    assert last_down.stride == (1, 1) and (last_down.in_channels, encoder.neck[0].in_channels) == (320, 640)
    assert [type(m).__name__ for m in encoder.neck] == ["Conv2d", "LayerNorm2d", "Conv2d", "LayerNorm2d"]
    assert encoder.neck[0].bias is None and encoder.neck[2].bias is None
    params = sum(p.numel() for p in encoder.parameters()) / 1e6
    assert params == pytest.approx(23.2, abs=0.05)  # the paper's encoder size


@pytest.mark.parametrize("arch,width", [("m0_9", 384), ("m0_6", 320)])
def test_other_archs_for_students(arch, width):
    sam = build_repvit_sam(arch=arch, img_size=256)
    assert sam.image_encoder.neck[0].in_channels == width
    with torch.no_grad():
        assert sam.image_encoder(torch.randn(1, 3, 256, 256)).shape == (1, 256, 16, 16)
    assert sam.prompt_encoder.image_embedding_size == (16, 16)


def test_img_size_must_fit_the_stride():
    with pytest.raises(ValueError, match="multiple of 16"):
        RepViTSamEncoder(img_size=1000)


def test_trunk_equals_timm_with_last_stride_1():
    timm = pytest.importorskip("timm")
    encoder = randomize_batchnorm(RepViTSamEncoder("m2_3")).eval()
    theirs = timm.create_model("repvit_m2_3", pretrained=False, num_classes=0).eval()
    theirs.stages[3].downsample.spatial_downsample.c.stride = (1, 1)
    trunk = {f"features.{k}": v for k, v in encoder.features.state_dict().items()}
    theirs.load_state_dict(official_to_timm(trunk, "m2_3"), strict=True)
    x = torch.randn(1, 3, 160, 160)
    with torch.no_grad():
        ours, reference = encoder.forward_trunk(x), theirs.forward_features(x)
    assert ours.shape == reference.shape == (1, 640, 10, 10)
    assert (ours - reference).abs().max() <= 1e-5 * reference.abs().max()


def test_official_flat_layout_loads_strictly(tmp_path):
    official = build_repvit_sam().state_dict()  # repvit_sam.pt: M2.3, 55 features, neck, SAM heads
    assert {k.split(".")[0] for k in official} == {"image_encoder", "prompt_encoder", "mask_decoder"}
    for key in ("image_encoder.features.0.0.c.weight", "image_encoder.features.54.channel_mixer.m.2.bn.weight",
                "image_encoder.features.1.token_mixer.1.fc1.weight", "image_encoder.neck.0.weight",
                "image_encoder.neck.3.bias", "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
                "mask_decoder.transformer.layers.1.cross_attn_image_to_token.out_proj.weight"):
        assert key in official, key
    assert not any(k.startswith("image_encoder.features.55.") for k in official)
    sam = small_sam()
    torch.save(sam.state_dict(), tmp_path / "repvit_sam.pt")
    loaded = build_repvit_sam(tmp_path / "repvit_sam.pt", **SMALL)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in sam.state_dict().items())
    # the zoo name resolves to the cached file (nothing is downloaded when it is there)
    target = cache_dir() / ZOO["repvit_sam"].filename
    target.parent.mkdir(parents=True)
    (tmp_path / "repvit_sam.pt").rename(target)
    by_name = build_repvit_sam("repvit_sam", **SMALL)
    assert torch.equal(by_name.image_encoder.neck[2].weight, sam.image_encoder.neck[2].weight)


def test_bad_checkpoint_names_the_keys():
    state = dict(build_repvit_sam(arch="m0_6", img_size=256).state_dict())
    del state["image_encoder.neck.1.weight"]
    state["mask_decoder.extra_head.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"missing keys.*image_encoder\.neck\.1\.weight.*unexpected keys.*"
                                              r"mask_decoder\.extra_head\.weight"):
        build_repvit_sam(state, arch="m0_6", img_size=256)
    other_arch = build_repvit_sam(arch="m0_9", img_size=256).state_dict()
    with pytest.raises(CheckpointError, match="shape mismatches"):
        build_repvit_sam(other_arch, arch="m0_6", img_size=256)


def test_fused_channels_last_equals_unfused():
    sam = small_sam(arch="m2_3", img_size=256)
    fused = reparameterize(copy.deepcopy(sam.image_encoder)).to(memory_format=torch.channels_last)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        reference = sam.image_encoder(x)
        out = fused(x.contiguous(memory_format=torch.channels_last))
    assert (out - reference).abs().mean() <= 1e-3 * reference.std()


PROMPTS = {
    "points": lambda g: dict(points=(torch.rand(5, 3, 2, generator=g) * 256, torch.randint(0, 2, (5, 3), generator=g))),
    "boxes": lambda g: dict(boxes=torch.sort(torch.rand(5, 2, 2, generator=g) * 256, dim=1).values.reshape(5, 4)),
    "points+boxes": lambda g: dict(points=(torch.rand(5, 2, 2, generator=g) * 256, torch.ones(5, 2)),
                                   boxes=torch.tensor([[10.0, 20.0, 200.0, 220.0]] * 5)),
    "mask": lambda g: dict(points=(torch.rand(5, 1, 2, generator=g) * 256, torch.ones(5, 1)),
                           masks=torch.randn(5, 1, 64, 64, generator=g)),
    "one mask for all": lambda g: dict(boxes=torch.tensor([[0.0, 0.0, 100.0, 90.0]] * 5),
                                       masks=torch.randn(1, 1, 64, 64, generator=g)),
}


@pytest.fixture(scope="module")
def sam():
    return small_sam()


@pytest.mark.parametrize("multimask", [False, True])
@pytest.mark.parametrize("kind", list(PROMPTS))
def test_fast_decoder_equals_segment_anything(sam, kind, multimask):
    gen = torch.Generator().manual_seed(1)
    prompt = PROMPTS[kind](gen)
    embedding = torch.randn(1, 256, 16, 16, generator=gen)
    with torch.no_grad():
        sparse, dense = sam.prompt_encoder(prompt.get("points"), prompt.get("boxes"), prompt.get("masks"))
        reference, ref_iou = sam.mask_decoder(embedding, sam.prompt_encoder.get_dense_pe(), sparse, dense, multimask)
        fast = FastMaskDecoder(sam)
        mask_dense = None if "masks" not in prompt else dense.expand(sparse.shape[0], -1, -1, -1)
        masks, iou = fast(fast.prepare(embedding), sparse, mask_dense, multimask)
    assert masks.shape == reference.shape == (5, 3 if multimask else 1, 64, 64)
    assert (masks - reference).abs().max() <= 1e-5 * reference.abs().max()
    assert (iou - ref_iou).abs().max() <= 1e-5 * ref_iou.abs().max()


def test_fast_decoder_at_full_size():
    sam = small_sam(img_size=1024)
    embedding = torch.randn(1, 256, 64, 64)
    boxes = torch.tensor([[10.0, 20.0, 500.0, 600.0], [300.0, 200.0, 1000.0, 900.0]])
    with torch.no_grad():
        sparse, dense = sam.prompt_encoder(None, boxes, None)
        reference, ref_iou = sam.mask_decoder(embedding, sam.prompt_encoder.get_dense_pe(), sparse, dense, False)
        fast = FastMaskDecoder(sam)
        masks, iou = fast(fast.prepare(embedding), sparse, None, False)
    assert masks.shape == (2, 1, 256, 256)
    assert (masks - reference).abs().max() <= 1e-5 * reference.abs().max()
    assert torch.allclose(iou, ref_iou, atol=1e-5)
