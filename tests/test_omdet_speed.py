"""OmDet-Turbo's CPU rewrites (``grounding.omdet_speed``) against the stock transformers model, same random weights.

Tolerances: the rewrites only reorder float32 sums (fused attention kernels, BatchNorm folded into the
convolutions, RepVGG's 1x1 branch inside the 3x3 kernel, activations as oneDNN post-ops, a gather instead of
``grid_sample``), so module
outputs and the backbone / encoder features agree to 1e-5 of their magnitude. The decoder starts from the
encoder's top-k queries: where two candidates tie to float rounding (random weights), a rewrite may swap
one of them, so decoder outputs are compared query by query and at most one query in ten may differ.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from transformers import AutoProcessor, OmDetTurboConfig, OmDetTurboForObjectDetection
from transformers.modeling_attn_mask_utils import _prepare_4d_attention_mask
from transformers.models.omdet_turbo.modeling_omdet_turbo import OmDetTurboMultiheadAttention

from repvit_plugins.grounding.omdet_backend import fill_meta_buffers
from repvit_plugins.grounding.omdet_speed import speed_up_omdet, use_sdpa_attention

from ._omdet_fixtures import make_tiny_omdet_turbo

FEATURE_RTOL = 1e-5
QUERY_ATOL = 1e-4
MAX_SWAPPED_QUERIES = 0.1


@pytest.fixture(scope="module")
def omdet_dir(tmp_path_factory):
    return make_tiny_omdet_turbo(tmp_path_factory.mktemp("omdet-speed"), num_queries=30)


@pytest.fixture(scope="module")
def stock(omdet_dir):
    model = OmDetTurboForObjectDetection.from_pretrained(omdet_dir).eval()
    fill_meta_buffers(model)
    return model


def _inputs(omdet_dir, seed=0):
    image = np.random.default_rng(seed).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    inputs = AutoProcessor.from_pretrained(omdet_dir)(images=image, text=["cat", "dog", "red frisbee"],
                                                      return_tensors="pt")
    inputs.pop("pixel_mask", None)
    return inputs


def _run_with_features(model, inputs):
    """Model outputs plus the vision backbone's and the encoder's first feature maps."""
    features = {}
    hooks = [getattr(model, part).register_forward_hook(
        lambda module, args, out, part=part: features.__setitem__(part, out[0] if isinstance(out, (list, tuple))
                                                                  else out[0][0]))
        for part in ("vision_backbone", "encoder")]
    with torch.no_grad():
        outputs = model(**inputs)
    for hook in hooks:
        hook.remove()
    return outputs, features


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool((a - b).abs().max() <= FEATURE_RTOL * max(a.abs().max().item(), 1e-6))


def test_sdpa_attention_equals_eager_with_a_padding_mask():
    torch.manual_seed(0)
    attention = OmDetTurboMultiheadAttention(OmDetTurboConfig(), 32, 4, 0.0).eval()
    reference = copy.deepcopy(attention)
    assert use_sdpa_attention(attention) == 1
    queries, keys, values = (torch.randn(2, 37, 32) for _ in range(3))
    padding = torch.zeros(2, 37, dtype=torch.bool)
    padding[0, 30:] = True  # the padded task tokens of a shorter prompt
    mask = _prepare_4d_attention_mask(~padding, dtype=torch.float32)
    with torch.no_grad():
        ours = attention(queries, keys, values, attention_mask=mask)[0]
        theirs = reference(queries, keys, values, attention_mask=mask)[0]
        with_weights = attention(queries, keys, values, attention_mask=mask, output_attentions=True)
    assert _close(ours, theirs)
    assert len(with_weights) == 2 and torch.allclose(with_weights[0], theirs)  # weights asked for: eager path


def test_speed_up_keeps_features_and_detections(omdet_dir, stock):
    fast = copy.deepcopy(stock)
    counts = speed_up_omdet(fast)
    assert counts == {"window_attention": 12, "attention": 3, "conv_norm": counts["conv_norm"],
                      "activations": counts["activations"], "channels_last": 1, "deformable_attention": 2}
    assert counts["conv_norm"] > 0 and counts["activations"] > 12 + 2  # Swin's 12 MLPs, 2 decoder FFNs, SiLU convs
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    for seed in range(3):
        inputs = _inputs(omdet_dir, seed)
        theirs, their_features = _run_with_features(stock, inputs)
        ours, our_features = _run_with_features(fast, inputs)
        for part in ("vision_backbone", "encoder"):
            assert _close(our_features[part], their_features[part]), part
        for name in ("decoder_coord_logits", "decoder_class_logits"):
            a, b = getattr(ours, name), getattr(theirs, name)
            differing = ((a - b).abs().flatten(2).amax(-1) > QUERY_ATOL).float().mean().item()
            assert differing <= MAX_SWAPPED_QUERIES, (name, differing)


def test_speed_up_needs_eval_mode(stock):
    with pytest.raises(ValueError, match="eval"):
        speed_up_omdet(copy.deepcopy(stock).train())
