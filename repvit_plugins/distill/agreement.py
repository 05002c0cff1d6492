"""How well a student's embedding stands in for the teacher's: box-prompt mask IoU through one decoder.

Both embeddings go through the *teacher's* prompt encoder and mask decoder
(``segment_anything``) with the same box prompts; the masks are compared at the
input resolution inside the unpadded image. Boxes come from annotations, from
the teacher's own masks (a point grid prompted on the teacher embedding, best of
SAM's three masks per point, deduplicated by NMS) or at random.
"""
from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

import torch
from torch.nn import functional as F

from ..bench.boxes import random_boxes
from ..bench.numeric_agreement import mask_iou

if TYPE_CHECKING:  # segment_anything ships no types: mypy sees its classes as Any
    from segment_anything.modeling import Sam

__all__ = ["BOX_SOURCES", "decode_logits", "decode_boxes", "boxes_from_teacher", "box_prompt_agreement"]

BOX_SOURCES = ("annotations", "teacher", "random")


def _upsample(low_res: torch.Tensor, img_size: int, input_size: tuple[int, int]) -> torch.Tensor:
    """Low-res mask logits -> boolean masks at the input resolution, padding cut off."""
    logits = F.interpolate(low_res, (img_size, img_size), mode="bilinear", align_corners=False)
    return logits[..., : input_size[0], : input_size[1]] > 0.0


@torch.no_grad()
def decode_logits(sam: Sam, embedding: torch.Tensor, points=None, boxes: torch.Tensor | None = None,
                  multimask_output: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM's low-res mask logits and IoU predictions for a batch of prompts on one ``1 x C x H x W`` embedding."""
    sparse, dense = sam.prompt_encoder(points=points, boxes=boxes, masks=None)
    return sam.mask_decoder(image_embeddings=embedding, image_pe=sam.prompt_encoder.get_dense_pe(),
                            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                            multimask_output=multimask_output)


def decode_boxes(sam: Sam, embedding: torch.Tensor, boxes: torch.Tensor,
                 input_size: tuple[int, int]) -> torch.Tensor:
    """Masks (``N x h x w`` bool) for ``boxes`` (``N x 4`` xyxy, input frame) on one ``1 x C x H x W`` embedding."""
    low_res, _ = decode_logits(sam, embedding, boxes=boxes)
    return _upsample(low_res, sam.image_encoder.img_size, input_size)[:, 0]


def _mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight xyxy boxes of non-empty boolean masks (``N x h x w``)."""
    rows, cols = masks.any(dim=2), masks.any(dim=1)
    idx_h = torch.arange(masks.shape[1], device=masks.device)
    idx_w = torch.arange(masks.shape[2], device=masks.device)
    y0 = torch.where(rows, idx_h, masks.shape[1]).min(dim=1).values
    y1 = torch.where(rows, idx_h, -1).max(dim=1).values + 1
    x0 = torch.where(cols, idx_w, masks.shape[2]).min(dim=1).values
    x1 = torch.where(cols, idx_w, -1).max(dim=1).values + 1
    return torch.stack([x0, y0, x1, y1], dim=1).float()


@torch.no_grad()
def boxes_from_teacher(sam: Sam, embedding: torch.Tensor, input_size: tuple[int, int], num_boxes: int,
                       points_per_side: int = 4, min_area: float = 0.002, nms_iou: float = 0.7) -> torch.Tensor:
    """Boxes of the teacher's masks for a grid of single-point prompts (up to ``num_boxes``, best first)."""
    from torchvision.ops import nms

    h, w = input_size
    steps = (torch.arange(points_per_side, device=embedding.device) + 0.5) / points_per_side
    ys, xs = torch.meshgrid(steps * h, steps * w, indexing="ij")
    points = torch.stack([xs.flatten(), ys.flatten()], dim=1)[:, None]  # P x 1 x 2
    labels = torch.ones(points.shape[:2], device=embedding.device, dtype=torch.int)
    low_res, scores = decode_logits(sam, embedding, points=(points, labels), multimask_output=True)
    best = scores.argmax(dim=1)
    masks = _upsample(low_res[torch.arange(len(best)), best][:, None], sam.image_encoder.img_size, input_size)[:, 0]
    scores = scores[torch.arange(len(best)), best]
    keep = masks.flatten(1).float().mean(dim=1) >= min_area
    masks, scores = masks[keep], scores[keep]
    if not len(masks):
        return masks.new_zeros((0, 4), dtype=torch.float32)
    boxes = _mask_boxes(masks)
    keep = nms(boxes, scores.float(), nms_iou)[:num_boxes]
    return boxes[keep]


def box_prompt_agreement(sam: Sam, student: torch.Tensor, teacher: torch.Tensor, input_size: tuple[int, int],
                         key: str, boxes: torch.Tensor | None = None, box_source: str = "teacher",
                         num_boxes: int = 8, points_per_side: int = 4, seed: int = 0) -> torch.Tensor:
    """Per-box IoU between the masks decoded from ``student`` and ``teacher`` embeddings (``C x H x W`` each).

    ``box_source='annotations'`` uses ``boxes`` (falling back to the teacher's masks when an image
    has none); ``'teacher'`` derives boxes from the teacher's masks (random boxes when it finds no
    mask); ``'random'`` draws boxes seeded by ``key`` and ``seed``, the same at every validation.
    """
    if box_source not in BOX_SOURCES:
        raise ValueError(f"box_source must be one of {BOX_SOURCES}, got {box_source!r}")
    student, teacher = student[None].float(), teacher[None].float()
    if box_source == "annotations" and boxes is not None and len(boxes):
        prompts = boxes[:num_boxes].float()
    elif box_source in ("annotations", "teacher"):
        prompts = boxes_from_teacher(sam, teacher, input_size, num_boxes, points_per_side)
    else:
        prompts = teacher.new_zeros((0, 4))
    if not len(prompts):
        generator = torch.Generator().manual_seed(zlib.crc32(key.encode()) ^ seed)
        prompts = random_boxes(input_size, num_boxes, generator)
    prompts = prompts.to(teacher.device)
    return mask_iou(decode_boxes(sam, student, prompts, input_size), decode_boxes(sam, teacher, prompts, input_size))
