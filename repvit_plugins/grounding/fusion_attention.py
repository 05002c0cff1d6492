"""Grounding DINO's image-text fusion attention with its image-side projections folded onto the text side.

Each encoder layer's ``GroundingDinoBiMultiHeadAttention`` (MM-Grounding-DINO / LLMDet: transformers'
``MMGroundingDinoBiMultiHeadAttention``, the same code under another name) projects all ``N`` image tokens
(about 22 000 at 800x1333) to 1024 channels three times (queries, values, output), although
they only ever meet the ``T`` text tokens (a dozen). Every projection is linear, so it moves
to the short side:

* scores: ``(v Wq_h' + bq_h) K_h' s = v (s Wq_h' K_h') + s bq_h K_h'``: one ``N x C x heads*T`` product;
* image output: ``sum_h P_h (V_h Wo_h') + bo``, with ``V_h Wo_h'`` computed on the text side;
* text output: ``R_h (v Wv_h' + bv_h) = (R_h v) Wv_h' + bv_h`` (``R_h``'s rows sum to one).

The numbers are the same up to float32 rounding (sums in another order); the multiply-adds of
the image side drop from ``3 N C 1024`` to ``3 N C heads*T`` (about 20x fewer at 11 text tokens).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from transformers.models.grounding_dino.modeling_grounding_dino import GroundingDinoBiMultiHeadAttention
from transformers.models.mm_grounding_dino.modeling_mm_grounding_dino import MMGroundingDinoBiMultiHeadAttention

__all__ = ["FoldedBiMultiHeadAttention", "FoldedMMBiMultiHeadAttention", "use_folded_fusion_attention"]

_PROJECTIONS = ("vision_proj", "text_proj", "values_vision_proj", "values_text_proj", "out_vision_proj",
                "out_text_proj")
_CLAMP = 50000.0  # transformers' bound on the scores (kept for the half-precision range)


if TYPE_CHECKING:  # to mypy the mixin has the attributes of the classes it is mixed into (both share them)
    _BiAttention = GroundingDinoBiMultiHeadAttention
else:
    _BiAttention = object


class _FoldedForward(_BiAttention):
    """The folded ``forward``; mixed in before one of transformers' bi-attention classes (its fallback)."""

    def _plain_projections(self) -> bool:
        return all(type(getattr(self, name)) is nn.Linear for name in _PROJECTIONS)

    def forward(self, vision_features: torch.FloatTensor, text_features: torch.FloatTensor,
                vision_attention_mask: torch.BoolTensor | None = None,
                text_attention_mask: torch.BoolTensor | None = None
                ) -> tuple[tuple[torch.FloatTensor, torch.FloatTensor], tuple[torch.FloatTensor, torch.FloatTensor]]:
        if (self.training and self.dropout > 0) or not self._plain_projections():
            # dropout acts on the probabilities; swapped projections (int8 ones) have no weight to fold
            return super().forward(vision_features, text_features, vision_attention_mask, text_attention_mask)
        batch, tokens, channels = vision_features.shape
        words, heads, dim = text_features.shape[1], self.num_heads, self.head_dim
        # (B, heads, T, D) text-side projections, split into heads by transformers' own helper
        keys = self._reshape(self.text_proj(text_features), words, batch)
        text_values = self._reshape(self.values_text_proj(text_features), words, batch)
        query_weight = self.vision_proj.weight.view(heads, dim, channels)
        folded_queries = torch.matmul(keys, query_weight) * self.scale  # (B, heads, T, C)
        score_bias = torch.matmul(keys, self.vision_proj.bias.view(heads, dim, 1)) * self.scale  # (B, heads, T, 1)
        scores = torch.baddbmm(score_bias.reshape(batch, 1, heads * words),
                               vision_features, folded_queries.reshape(batch, heads * words, channels).transpose(1, 2))
        scores = (scores - scores.max()).clamp_(-_CLAMP, _CLAMP)  # (B, N, heads*T)

        # text side: each (head, word) attends over the N image tokens
        text_scores = (scores - scores.amax(dim=1, keepdim=True)).clamp_(-_CLAMP, _CLAMP)
        if vision_attention_mask is not None:
            text_scores.masked_fill_(vision_attention_mask[:, :, None], float("-inf"))
        text_probs = text_scores.softmax(dim=1)  # (B, N, heads*T)
        gathered = torch.bmm(text_probs.transpose(1, 2), vision_features).view(batch, heads, words, channels)
        value_weight = self.values_vision_proj.weight.view(heads, dim, channels)
        text_output = torch.matmul(gathered, value_weight.transpose(1, 2)) + self.values_vision_proj.bias.view(
            heads, 1, dim)  # (B, heads, T, D)
        text_output = self.out_text_proj(text_output.transpose(1, 2).reshape(batch, words, heads * dim))

        # image side: each image token attends over the T words of each head
        vision_scores = scores.view(batch, tokens, heads, words)
        if text_attention_mask is not None:
            vision_scores = vision_scores.masked_fill(text_attention_mask[:, None, None, :], float("-inf"))
        vision_probs = vision_scores.softmax(dim=-1)
        out_weight = self.out_vision_proj.weight.view(channels, heads, dim).permute(1, 2, 0)  # (heads, D, C)
        folded_values = torch.matmul(text_values, out_weight).reshape(batch, heads * words, channels)
        vision_output = torch.baddbmm(self.out_vision_proj.bias.view(1, 1, channels),
                                      vision_probs.reshape(batch, tokens, heads * words), folded_values)

        # the attention maps in transformers' layout: (B*heads, N, T) and (B*heads, T, N)
        vision_maps = vision_probs.permute(0, 2, 1, 3).reshape(batch * heads, tokens, words)
        text_maps = text_probs.view(batch, tokens, heads, words).permute(0, 2, 3, 1).reshape(batch * heads, words,
                                                                                              tokens)
        # torch ops return Tensor; transformers annotates these FloatTensor, which the override has to repeat
        return (vision_output, vision_maps), (text_output, text_maps)  # type: ignore[return-value]


class FoldedBiMultiHeadAttention(_FoldedForward, GroundingDinoBiMultiHeadAttention):
    """``GroundingDinoBiMultiHeadAttention`` with the same weights and outputs, computed on the text side."""


class FoldedMMBiMultiHeadAttention(_FoldedForward, MMGroundingDinoBiMultiHeadAttention):
    """``MMGroundingDinoBiMultiHeadAttention`` (MM-Grounding-DINO, LLMDet), folded the same way."""


_FOLDED = {GroundingDinoBiMultiHeadAttention: FoldedBiMultiHeadAttention,
           MMGroundingDinoBiMultiHeadAttention: FoldedMMBiMultiHeadAttention}


def use_folded_fusion_attention(model: nn.Module) -> int:
    """Turn every transformers bi-attention (Grounding DINO, MM-Grounding-DINO) in ``model`` into the folded one
    (weights kept); how many."""
    folded = 0
    for module in model.modules():
        kind = _FOLDED.get(type(module))
        if kind is not None:
            module.__class__ = kind
            folded += 1
    return folded
