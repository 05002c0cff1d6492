"""Multi-scale deformable attention on the CPU as one weighted gather (``embedding_bag``), not ``grid_sample``.

transformers' PyTorch path samples every level with ``grid_sample`` on a channels-first
copy of the values, stacks all samples (``B*heads x D x queries x levels*points``, 330 MB
at 800x1333 in float32) and only then applies the attention weights. Here the four
bilinear corners of every sampling point get the weight ``bilinear * attention``, and one
``embedding_bag(mode='sum')`` over a channels-last, zero-bordered value table sums them:
the same numbers (float32 rounding aside), about half the time and a fraction of the memory.
Zero padding (``grid_sample``'s ``padding_mode='zeros'``, ``align_corners=False``) comes from
the border: coordinates are clamped into it, where every value is zero.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FastMultiScaleDeformableAttention", "multi_scale_deformable_attention", "use_fast_deformable_attention"]

_BORDER = (1, 2)  # zero rows / columns before and after each level's map (a clamped corner + its neighbour)


def _bordered_table(value: torch.Tensor, shapes: Sequence[tuple[int, int]]) -> torch.Tensor:
    """``(B*heads*S', D)`` float32 values level by level, each map framed by zeros; ``value``: ``(B, S, heads, D)``."""
    batch, _, heads, dim = value.shape
    before, after = _BORDER
    areas = [(h + before + after) * (w + before + after) for h, w in shapes]
    table = value.new_zeros((batch, heads, sum(areas), dim), dtype=torch.float32)
    start = 0
    for level, (height, width), area in zip(value.split([h * w for h, w in shapes], dim=1), shapes, areas):
        framed = table[:, :, start:start + area].view(batch, heads, height + before + after, -1, dim)
        framed[:, :, before:before + height, before:before + width] = (
            level.view(batch, height, width, heads, dim).permute(0, 3, 1, 2, 4))  # one strided copy + cast
        start += area
    return table.view(-1, dim)


def multi_scale_deformable_attention(value: torch.Tensor, shapes: Sequence[tuple[int, int]],
                                     sampling_locations: torch.Tensor,
                                     attention_weights: torch.Tensor) -> torch.Tensor:
    """Deformable attention output ``(B, queries, heads*D)`` in ``value``'s dtype.

    Args:
        value: ``(B, S, heads, D)``, the levels' maps flattened row-major one after the other.
        shapes: ``(height, width)`` of each level; ``S`` is the sum of their areas.
        sampling_locations: ``(B, queries, heads, levels, points, 2)``, ``(x, y)`` in ``[0, 1]`` of each level.
        attention_weights: ``(B, queries, heads, levels, points)``.
    """
    batch, _, heads, dim = value.shape
    _, queries, _, levels, points, _ = sampling_locations.shape
    before, after = _BORDER
    table = _bordered_table(value, shapes)
    sizes = torch.tensor(shapes, dtype=torch.float32)
    heights, widths = sizes[:, 0].view(levels, 1), sizes[:, 1].view(levels, 1)
    padded_widths = (widths + before + after).long()
    areas = (sizes[:, 0].long() + before + after) * padded_widths.view(-1)
    starts = torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]]).view(levels, 1)

    locations = sampling_locations.float()
    # pixel coordinates (align_corners=False), clamped to the border, shifted into the bordered map
    x = (locations[..., 0] * widths - 0.5).clamp_(min=-1.0).minimum(widths).add_(before)
    y = (locations[..., 1] * heights - 0.5).clamp_(min=-1.0).minimum(heights).add_(before)
    x0, y0 = x.floor(), y.floor()
    fx, fy = x.sub_(x0), y.sub_(y0)
    index_type = torch.int32 if batch * heads * int(areas.sum()) < 2**31 else torch.long
    starts, padded_widths = starts.to(index_type), padded_widths.to(index_type)
    corner = starts + y0.to(index_type) * padded_widths + x0.to(index_type)  # (B, Q, heads, levels, points)
    heads_offset = torch.arange(batch * heads, dtype=index_type).view(batch, 1, heads, 1, 1) * int(areas.sum())
    steps = torch.stack([torch.zeros_like(padded_widths), torch.ones_like(padded_widths),
                         padded_widths, padded_widths + 1], dim=-1).view(levels, 1, 4)
    indices = corner.add_(heads_offset).unsqueeze(-1) + steps

    # corner weights, in the order of ``steps``: (row y0, y0 + 1) x (column x0, x0 + 1), times attention
    rows = torch.stack([1 - fy, fy], dim=-1).mul_(attention_weights.float().unsqueeze(-1))
    columns = torch.stack([1 - fx, fx], dim=-1)
    weights = rows.unsqueeze(-1) * columns.unsqueeze(-2)
    # one bag per (batch, query, head): its levels x points x 4 corners; rows ordered (B, Q, heads)
    out = F.embedding_bag(indices.view(-1, levels * points * 4), table,
                          per_sample_weights=weights.view(-1, levels * points * 4), mode="sum")
    return out.view(batch, queries, heads * dim).to(value.dtype)


class FastMultiScaleDeformableAttention(nn.Module):
    """Drop-in for transformers' ``MultiScaleDeformableAttention`` (same ``forward`` arguments)."""

    def forward(self, value: torch.Tensor, value_spatial_shapes: torch.Tensor,
                value_spatial_shapes_list: list[tuple[int, int]], level_start_index: torch.Tensor,
                sampling_locations: torch.Tensor, attention_weights: torch.Tensor, im2col_step: int) -> torch.Tensor:
        return multi_scale_deformable_attention(value, value_spatial_shapes_list, sampling_locations,
                                                attention_weights)


def use_fast_deformable_attention(model: nn.Module) -> int:
    """Swap every transformers ``MultiScaleDeformableAttention`` in ``model`` for the fast one; how many.

    Matched by class name: Grounding DINO, MM-Grounding-DINO / LLMDet (and Deformable DETR) each hold their own
    copy of that class, with the same ``forward``.
    """
    swapped = 0
    for module in model.modules():
        attn = getattr(module, "attn", None)
        if type(attn).__name__ == "MultiScaleDeformableAttention" and not isinstance(attn, nn.Linear):
            module.attn = FastMultiScaleDeformableAttention()
            swapped += 1
    return swapped
