"""Conv2d + exact GELU as one oneDNN kernel (repvit_plugins.models.conv_gelu) against the two-step layers.

Tolerances: in float32 oneDNN evaluates the same erf GELU on the convolution's output before writing it, so
outputs agree to float rounding (1e-5 of their spread). In bf16 the fused kernel rounds once where the two-step
path rounds twice: its error against float32 must be no larger than the two-step path's (10 % slack).
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from repvit_plugins.models import conv_gelu
from repvit_plugins.models.conv_gelu import ConvGelu, fuse_conv_gelu
from repvit_plugins.models.repvit import reparameterize
from repvit_plugins.runtime.speed import autocast

from ._sam_fixtures import small_sam

RTOL = 1e-5


def _toy() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.GELU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.GELU(),
        nn.Conv2d(8, 16, 1), nn.GELU(approximate="tanh"),  # not the exact GELU: left alone
        nn.Sequential(nn.Conv2d(16, 16, 1), nn.GELU()),
    ).eval()


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = RTOL) -> bool:
    return bool((a.float() - b.float()).abs().max() <= rtol * b.float().std())


def test_fuses_exact_gelu_pairs_and_keeps_the_state_dict():
    plain = _toy()
    fused = copy.deepcopy(plain)
    assert fuse_conv_gelu(fused) == 3
    assert isinstance(fused[0], ConvGelu) and isinstance(fused[1], nn.Identity)
    assert type(fused[4]) is nn.Conv2d and isinstance(fused[5], nn.GELU)  # tanh GELU kept as it is
    assert fused.state_dict().keys() == plain.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(fused.state_dict().values(), plain.state_dict().values()))
    x = torch.randn(2, 3, 33, 47)
    with torch.no_grad():
        assert _close(fused(x), plain(x))
        assert _close(fused(x.contiguous(memory_format=torch.channels_last)), plain(x))


def test_falls_back_to_the_two_step_layers(monkeypatch):
    plain = _toy()
    fused = copy.deepcopy(plain)
    fuse_conv_gelu(fused)
    monkeypatch.setattr(conv_gelu, "_onednn_runs", lambda dtype: False)
    x = torch.randn(1, 3, 20, 20)
    with torch.no_grad():
        assert torch.equal(fused(x), plain(x))


@pytest.fixture(scope="module")
def encoders():
    """A small RepViT-SAM encoder, fused as SamSegmenter fuses it, with and without the conv + GELU kernels."""
    plain = reparameterize(small_sam(seed=0).image_encoder.eval())
    fused = copy.deepcopy(plain)
    assert fuse_conv_gelu(fused) > 0
    return plain, fused


def test_sam_encoder_float32_agrees(encoders):
    plain, fused = encoders
    x = torch.randn(1, 3, plain.img_size, plain.img_size)
    with torch.no_grad():
        assert _close(fused(x), plain(x))


@pytest.mark.skipif(not conv_gelu._onednn_runs(torch.bfloat16), reason="oneDNN bf16 needs AVX-512 or AVX-NE-CONVERT")
def test_sam_encoder_bf16_is_no_further_from_float32(encoders):
    plain, fused = encoders
    x = torch.randn(1, 3, plain.img_size, plain.img_size)
    with torch.no_grad():
        reference = plain(x)
        with autocast("cpu", "bf16"):
            two_step, one_kernel = plain(x).float(), fused(x).float()
    assert (one_kernel - reference).abs().mean() <= 1.1 * (two_step - reference).abs().mean()
    assert (one_kernel - reference).abs().mean() <= 0.02 * reference.std()
