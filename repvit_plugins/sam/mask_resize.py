"""SAM's mask post-processing (upscale to the model frame, crop the padding, resize to the image) as two GEMMs.

``Sam.postprocess_masks`` resizes ``256 x 256`` logits bilinearly to ``1024 x 1024``,
crops the padding and resizes again to the image: two full passes over a
``1024 x 1024`` map per mask. Bilinear resizing is separable and linear, so the
whole chain is ``Ry @ L @ Rx.T`` with one small matrix per axis. The matrices are
built by running ``F.interpolate`` itself on an identity (so they are its sampling
rule, not a re-implementation), once per image size, and only the low-res rows and
columns the crop keeps take part. Results equal ``postprocess_masks`` to float32
rounding.
"""
from __future__ import annotations

import functools

import torch
from torch.nn import functional as F

__all__ = ["axis_operator", "postprocess_masks"]

MAX_GEMM_PIXELS = 2_500_000
"""Above this many image pixels the GEMMs cost more than ``postprocess_masks``' two passes: fall back to it."""


@functools.lru_cache(maxsize=16)
def axis_operator(low: int, frame: int, keep: int, out: int) -> tuple[torch.Tensor, int, int]:
    """One axis of ``postprocess_masks``: ``low`` -> ``frame`` (bilinear), crop to ``keep``, -> ``out`` (bilinear).

    Returns ``(matrix out x n, start, stop)``: output = ``matrix @ logits[start:stop]`` along this axis.
    """
    eye = torch.eye(low)[None]  # 1 x low(channels) x low(length); float32 weights, as postprocess_masks computes them
    up = F.interpolate(eye, size=frame, mode="linear", align_corners=False)[..., :keep]
    op = F.interpolate(up, size=out, mode="linear", align_corners=False)[0].t()  # out x low
    used = op.abs().sum(0).nonzero().flatten()
    start, stop = int(used.min()), int(used.max()) + 1
    return op[:, start:stop].contiguous(), start, stop


def postprocess_masks(masks: torch.Tensor, img_size: int, input_size: tuple[int, int],
                      original_size: tuple[int, int]) -> torch.Tensor:
    """``Sam.postprocess_masks`` for ``B x C x h x w`` float logits: ``B x C x H x W`` at ``original_size``."""
    h, w = masks.shape[-2:]
    height, width = (int(v) for v in original_size)
    if height * width > MAX_GEMM_PIXELS or not masks.is_floating_point():
        masks = F.interpolate(masks, (img_size, img_size), mode="bilinear", align_corners=False)
        masks = masks[..., :input_size[0], :input_size[1]]
        return F.interpolate(masks, (height, width), mode="bilinear", align_corners=False)
    ry, y0, y1 = axis_operator(h, img_size, int(input_size[0]), height)
    rx, x0, x1 = axis_operator(w, img_size, int(input_size[1]), width)
    ry, rx = ry.to(masks.device, masks.dtype), rx.to(masks.device, masks.dtype)
    low = masks[..., y0:y1, x0:x1]
    rows, cols = y1 - y0, x1 - x0
    if height * cols * (rows + width) <= width * rows * (cols + height):  # the order with fewer multiply-adds
        return torch.matmul(torch.matmul(ry, low), rx.t())
    return torch.matmul(ry, torch.matmul(low, rx.t()))
