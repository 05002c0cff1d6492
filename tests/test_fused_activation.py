"""Layer + activation as one oneDNN kernel (repvit_plugins.runtime.fused_activation) against the two-step layers.

Tolerances: in float32 oneDNN evaluates the same function (GELU with erf) on the layer's output before writing
it, so outputs agree to float rounding (1e-5 of their spread). In bf16 the fused kernel rounds once where the
two-step path rounds twice: its error against float32 must be no larger than the two-step path's (10 % slack).
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from transformers import SwinConfig
from transformers.models.swin.modeling_swin import SwinIntermediate

from repvit_plugins.models.repvit import reparameterize
from repvit_plugins.runtime import fused_activation
from repvit_plugins.runtime.fused_activation import FusedConv2d, FusedLinear, fuse_activations
from repvit_plugins.runtime.speed import autocast

from ._sam_fixtures import small_sam

RTOL = 1e-5


class _TimmLikeMlp(nn.Module):
    """timm's ``Mlp`` layout (matched by class name): fc1 -> act -> drop -> norm -> fc2."""

    def __init__(self, act: nn.Module):
        super().__init__()
        self.fc1, self.act, self.drop1, self.norm, self.fc2 = nn.Linear(8, 32), act, nn.Identity(), nn.Identity(), \
            nn.Linear(32, 8)

    def forward(self, x):
        return self.fc2(self.norm(self.drop1(self.act(self.fc1(x)))))


_TimmLikeMlp.__name__ = "Mlp"


def _toy() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.GELU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.ReLU(),
        nn.Conv2d(8, 16, 1), nn.GELU(approximate="tanh"),  # not the exact GELU: left alone
        nn.Sequential(nn.Conv2d(16, 16, 1), nn.SiLU()),
        nn.Flatten(2), nn.Unflatten(2, (9, 9)), nn.Flatten(1), nn.Linear(16 * 81, 8), nn.GELU(),
    ).eval()


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = RTOL) -> bool:
    return bool((a.float() - b.float()).abs().max() <= rtol * b.float().std())


def test_fuses_sequential_pairs_and_keeps_the_state_dict():
    plain = _toy()
    fused = copy.deepcopy(plain)
    assert fuse_activations(fused) == 4
    assert isinstance(fused[0], FusedConv2d) and isinstance(fused[1], nn.Identity)
    assert isinstance(fused[10], FusedLinear) and fused[10].activation == "gelu" and fused[2].activation == "relu"
    assert type(fused[4]) is nn.Conv2d and isinstance(fused[5], nn.GELU)  # tanh GELU kept as it is
    assert fused.state_dict().keys() == plain.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(fused.state_dict().values(), plain.state_dict().values()))
    x = torch.randn(2, 3, 17, 17)
    with torch.no_grad():
        assert _close(fused(x), plain(x))
        assert _close(fused(x.contiguous(memory_format=torch.channels_last)), plain(x))


@pytest.mark.parametrize("holder", ["timm", "swin"])
def test_fuses_the_known_holders(holder):
    torch.manual_seed(0)
    plain = _TimmLikeMlp(nn.GELU()) if holder == "timm" else SwinIntermediate(SwinConfig(hidden_act="gelu"), 8)
    plain.eval()
    fused = copy.deepcopy(plain)
    assert fuse_activations(fused) == 1
    x = torch.randn(3, 5, 8)
    with torch.no_grad():
        assert _close(fused(x), plain(x))


def test_two_step_path_where_onednn_cannot_run_or_gradients_flow(monkeypatch):
    plain = _toy()
    fused = copy.deepcopy(plain)
    fuse_activations(fused)
    x = torch.randn(1, 3, 17, 17)
    (fused(x.requires_grad_()).sum()).backward()  # training needs the two-step path: gradients flow
    assert fused[0].weight.grad is not None
    monkeypatch.setattr(fused_activation, "_onednn_runs", lambda dtype: False)
    with torch.no_grad():
        assert torch.equal(fused(x), plain(x))


@pytest.fixture(scope="module")
def encoders():
    """A small RepViT-SAM encoder, fused as SamSegmenter fuses it, with and without the fused kernels."""
    plain = reparameterize(small_sam(seed=0).image_encoder.eval())
    fused = copy.deepcopy(plain)
    assert fuse_activations(fused) > 0
    return plain, fused


def test_sam_encoder_float32_agrees(encoders):
    plain, fused = encoders
    x = torch.randn(1, 3, plain.img_size, plain.img_size)
    with torch.no_grad():
        assert _close(fused(x), plain(x))


@pytest.mark.skipif(not fused_activation._onednn_runs(torch.bfloat16),
                    reason="oneDNN bf16 needs AVX-512 or AVX-NE-CONVERT")
def test_sam_encoder_bf16_is_no_further_from_float32(encoders):
    plain, fused = encoders
    x = torch.randn(1, 3, plain.img_size, plain.img_size)
    with torch.no_grad():
        reference = plain(x)
        with autocast("cpu", "bf16"):
            two_step, one_kernel = plain(x).float(), fused(x).float()
    assert (one_kernel - reference).abs().mean() <= 1.1 * (two_step - reference).abs().mean()
    assert (one_kernel - reference).abs().mean() <= 0.02 * reference.std()


def test_grounding_dino_fast_path_fuses_swin_and_feed_forward_layers(tmp_path):
    """The hf detector's CPU path fuses Swin's MLPs and the encoder / decoder feed-forward layers (its outputs
    against transformers' own path are compared in test_deformable_attention)."""
    from repvit_plugins.grounding import build_detector

    from ._grounding_fixtures import make_tiny_hf_grounding_dino

    detector = build_detector("hf", model=str(make_tiny_hf_grounding_dino(tmp_path)))
    owners = {type(m).__name__ for m in detector.model.modules()
              if any(isinstance(c, FusedLinear) for c in m.children())}
    assert {"SwinIntermediate", "GroundingDinoDeformableLayer", "GroundingDinoDecoderLayer"} <= owners
    stock = build_detector("hf", model=str(make_tiny_hf_grounding_dino(tmp_path / "stock")), fast_attention=False)
    assert not any(isinstance(m, FusedLinear) for m in stock.model.modules())
