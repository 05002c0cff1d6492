"""The folded image-text fusion attention against transformers' own, for Grounding DINO and MM-Grounding-DINO."""
from __future__ import annotations

import copy

import pytest
import torch
from transformers import GroundingDinoConfig, MMGroundingDinoConfig
from transformers.models.grounding_dino.modeling_grounding_dino import GroundingDinoBiMultiHeadAttention
from transformers.models.mm_grounding_dino.modeling_mm_grounding_dino import MMGroundingDinoBiMultiHeadAttention

from repvit_plugins.grounding.fusion_attention import (
    FoldedBiMultiHeadAttention,
    FoldedMMBiMultiHeadAttention,
    use_folded_fusion_attention,
)

# float32 sums in another order: rounding only (measured 4e-7 on the full-size shape, 22 000 image tokens)
TOLERANCE = 2e-5


# transformers' class (its config class) -> the folded one
FAMILIES = {
    "grounding-dino": (GroundingDinoBiMultiHeadAttention, GroundingDinoConfig, FoldedBiMultiHeadAttention),
    "mm-grounding-dino": (MMGroundingDinoBiMultiHeadAttention, MMGroundingDinoConfig, FoldedMMBiMultiHeadAttention),
}


@pytest.fixture(params=list(FAMILIES))
def family(request):
    return request.param


def _modules(family: str, seed: int = 0, dropout: float = 0.0):
    stock_class, config_class, folded_class = FAMILIES[family]
    torch.manual_seed(seed)
    config = config_class(d_model=32, encoder_ffn_dim=96, encoder_attention_heads=6, fusion_dropout=dropout)
    stock = stock_class(config).eval()  # 3 heads of 16 channels
    for parameter in stock.parameters():  # biases too: the folding moves them, so they must be non-zero
        torch.nn.init.normal_(parameter, std=0.3)
    folded = copy.deepcopy(stock)
    assert use_folded_fusion_attention(folded) == 1 and type(folded) is folded_class
    assert isinstance(folded, stock_class)
    return stock, folded


def _inputs(seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    vision, text = torch.randn(2, 57, 32, generator=generator), torch.randn(2, 7, 32, generator=generator)
    vision_mask = torch.zeros(2, 57, dtype=torch.bool)
    vision_mask[1, 40:] = True  # the second image is padded
    text_mask = torch.zeros(2, 7, dtype=torch.bool)
    text_mask[0, 5:] = True  # the first prompt is padded
    return vision, text, vision_mask, text_mask


def _flat(outputs):
    (vision, vision_maps), (text, text_maps) = outputs
    return {"vision": vision, "vision maps": vision_maps, "text": text, "text maps": text_maps}


@pytest.mark.parametrize("masked", [True, False])
def test_equals_transformers_outputs_and_attention_maps(masked, family):
    stock, folded = _modules(family)
    vision, text, vision_mask, text_mask = _inputs()
    masks = (vision_mask, text_mask) if masked else (None, None)
    with torch.no_grad():
        expected, got = _flat(stock(vision, text, *masks)), _flat(folded(vision, text, *masks))
    for name, value in expected.items():
        assert got[name].shape == value.shape, name
        assert torch.allclose(got[name], value, atol=TOLERANCE * value.abs().max(), rtol=0), name
    assert expected["vision"].abs().max() > 0.5  # not a comparison between near-zeros
    if masked:  # padding gets no attention, as in transformers
        assert got["text maps"].view(2, 3, 7, 57)[1, :, :, 40:].abs().max() == 0
        assert got["vision maps"].view(2, 3, 57, 7)[0, :, :, 5:].abs().max() == 0


def test_bf16_autocast_stays_as_close_as_transformers_own(family):
    stock, folded = _modules(family)
    vision, text, vision_mask, text_mask = _inputs()
    with torch.no_grad():
        reference = _flat(stock(vision, text, vision_mask, text_mask))["vision"]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            stock_bf16 = _flat(stock(vision, text, vision_mask, text_mask))["vision"].float()
            folded_bf16 = _flat(folded(vision, text, vision_mask, text_mask))["vision"].float()
    stock_error = (stock_bf16 - reference).abs().mean() / reference.std()
    folded_error = (folded_bf16 - reference).abs().mean() / reference.std()
    assert folded_error <= max(2 * stock_error, 0.01), (folded_error, stock_error)  # measured 0.004 vs 0.005


def test_weights_and_state_dict_are_untouched(family):
    stock, folded = _modules(family)
    assert stock.state_dict().keys() == folded.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(stock.state_dict().values(), folded.state_dict().values()))
    assert use_folded_fusion_attention(folded) == 0  # already folded


def test_training_with_dropout_runs_transformers_path(family):
    stock, folded = _modules(family, dropout=0.5)
    stock.train(), folded.train()
    vision, text, vision_mask, text_mask = _inputs()
    torch.manual_seed(3)
    expected = _flat(stock(vision, text, vision_mask, text_mask))
    torch.manual_seed(3)
    got = _flat(folded(vision, text, vision_mask, text_mask))
    assert all(torch.equal(got[name], value) for name, value in expected.items())


def test_int8_projections_run_transformers_path(family):
    """``quantize_dynamic`` swaps the Linear layers for int8 ones, which have no float weight to fold."""
    stock, folded = (torch.ao.quantization.quantize_dynamic(m, {torch.nn.Linear}, dtype=torch.qint8)
                     for m in _modules(family))
    vision, text, vision_mask, text_mask = _inputs()
    with torch.no_grad():
        expected, got = _flat(stock(vision, text, vision_mask, text_mask)), _flat(folded(vision, text, vision_mask,
                                                                                         text_mask))
    assert all(torch.equal(got[name], value) for name, value in expected.items())
