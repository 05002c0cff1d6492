"""RTMDet-Ins head outputs -> instances, in torch without mmdet: what a deployed student needs beside its graph.

:class:`StudentSpec` is everything the exported graph does not hold (classes, input size, strides, the mask
head's dynamic-conv layout, test thresholds); it travels as JSON in the ONNX file's metadata, so the file
alone runs. :func:`decode_instances` turns one image's raw head outputs into boxes, scores, labels and masks
the way mmdet's RTMDet-Ins test step defines them:

1. per level, a point prior at every feature cell (``x = column * stride``, ``y = row * stride``);
2. sigmoid class scores, pairs (prior, class) above ``score_thr``, the best ``nms_pre`` per level;
3. boxes ``(x - left, y - top, x + right, y + bottom)`` clipped to the padded input, then scaled back;
4. class-aware NMS, the best ``max_per_img`` kept;
5. each kept instance's mask: its predicted kernel (a few 1x1 convs) applied to the shared mask features with
   two extra channels holding the offset of every mask cell from the instance's prior; the logits upsampled
   to the original image and thresholded at ``mask_thr_binary``.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["METADATA_KEY", "Instances", "LetterboxInfo", "StudentSpec", "decode_instances", "letterbox",
           "output_names"]

METADATA_KEY = "repvit_plugins.student"
"""Key of the :class:`StudentSpec` JSON in the ONNX file's ``metadata_props``."""

_COORD_SCALE = 8.0
"""RTMDet-Ins divides the instance-to-cell offsets by ``prior stride * 8`` before the dynamic convs."""


@dataclass(frozen=True)
class StudentSpec:
    """What the exported RTMDet-Ins graph needs around it (stored as JSON in the ONNX metadata).

    The graph reads ``1 x 3 x S x S`` float32 RGB pixels in 0..255 (letterboxed as :func:`letterbox` does);
    it converts the channel order and normalizes inside. ``mean`` / ``std`` are recorded for reference only.
    """

    classes: tuple[str, ...]
    input_size: int
    strides: tuple[int, ...]
    num_prototypes: int
    dyconv_channels: int
    num_dyconvs: int
    pad_value: float = 114.0
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    score_thr: float = 0.05
    nms_pre: int = 1000
    nms_iou: float = 0.6
    max_per_img: int = 100
    mask_thr_binary: float = 0.5
    min_bbox_size: float = -1.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> StudentSpec:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        tuples = {"classes", "strides", "mean", "std"}
        values: dict[str, Any] = {k: tuple(v) if k in tuples else v for k, v in data.items() if k in known}
        return cls(**values)

    @property
    def dyconv_shapes(self) -> list[tuple[int, int]]:
        """``(out, in)`` of each dynamic 1x1 conv: ``prototypes + 2`` coordinate channels in, one logit out."""
        shapes, width = [], self.num_prototypes + 2
        for i in range(self.num_dyconvs):
            out = 1 if i == self.num_dyconvs - 1 else self.dyconv_channels
            shapes.append((out, width))
            width = out
        return shapes


def output_names(num_levels: int) -> list[str]:
    """The graph's outputs: class scores, box distances and kernels per level, then the mask features."""
    return [f"{kind}_{i}" for kind in ("cls_score", "bbox_pred", "kernel_pred") for i in range(num_levels)] + [
        "mask_feat"]


@dataclass(frozen=True)
class LetterboxInfo:
    """Where the image sits in the graph's input: resized to ``resized`` (h, w) at the top left, the rest padded."""

    original: tuple[int, int]
    resized: tuple[int, int]

    @property
    def scale(self) -> tuple[float, float]:
        """``(sy, sx)``: resized / original per axis."""
        return self.resized[0] / self.original[0], self.resized[1] / self.original[1]


def letterbox(image: np.ndarray, size: int, pad_value: float = 114.0) -> tuple[np.ndarray, LetterboxInfo]:
    """``1 x 3 x size x size`` float32 graph input from an ``H x W x 3`` uint8 image (channel order kept).

    The longer side is resized to ``size`` (bilinear, aspect kept, sides rounded), the bottom / right padded
    with ``pad_value``: mmdet's ``Resize(keep_ratio=True)`` + ``Pad`` test pipeline.
    """
    import cv2

    height, width = image.shape[:2]
    scale = size / max(height, width)
    new_h, new_w = max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    padded = np.full((size, size, 3), pad_value, dtype=np.float32)
    padded[:new_h, :new_w] = resized
    return np.ascontiguousarray(padded.transpose(2, 0, 1)[None]), LetterboxInfo((height, width), (new_h, new_w))


@dataclass
class Instances:
    """One image's detections: ``boxes (N, 4)`` xyxy in original pixels, ``scores (N,)``, ``labels (N,)`` model
    class indices, ``masks (N, H, W)`` bool on the original image (``None`` when not asked for)."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor | None


def _priors(height: int, width: int, stride: int) -> torch.Tensor:
    """``(H*W, 2)`` prior points ``(x, y)`` of a feature map, row by row."""
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32) * stride,
                            torch.arange(width, dtype=torch.float32) * stride, indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1)


def _logit(probability: float) -> float:
    """The logit above which ``sigmoid(x) > probability``."""
    if probability <= 0:
        return -math.inf
    if probability >= 1:
        return math.inf
    return math.log(probability / (1 - probability))


def _candidates(cls_score: torch.Tensor, score_thr: float, nms_pre: int) -> tuple[torch.Tensor, ...]:
    """The best ``nms_pre`` (cell, class) pairs above ``score_thr`` of one level: ``(scores, cells, classes)``."""
    logits = cls_score.flatten(1).t()  # (cells, classes); compared as logits, so only the picked get a sigmoid
    cells, classes = torch.nonzero(logits > _logit(score_thr), as_tuple=True)
    picked = logits[cells, classes].sigmoid()
    order = torch.argsort(picked, descending=True)[:nms_pre]
    return picked[order], cells[order], classes[order]


def _mask_logits(mask_feat: torch.Tensor, kernels: torch.Tensor, points: torch.Tensor, strides: torch.Tensor,
                 spec: StudentSpec) -> torch.Tensor:
    """``(N, h, w)`` mask logits on the mask-feature grid for ``N`` instances (their kernels, prior points)."""
    _, height, width = mask_feat.shape
    cells = _priors(height, width, spec.strides[0])  # (h*w, 2)
    offsets = (points[:, None, :] - cells[None]) / (strides[:, None, None] * _COORD_SCALE)  # (N, h*w, 2)
    shared = mask_feat.reshape(1, mask_feat.shape[0], -1).expand(len(points), -1, -1)
    x = torch.cat([offsets.transpose(1, 2), shared], dim=1)  # (N, 2 + prototypes, h*w)
    shapes = spec.dyconv_shapes
    sizes = [o * i for o, i in shapes] + [o for o, _ in shapes]
    parts = torch.split(kernels, sizes, dim=1)
    for layer, (out, width_in) in enumerate(shapes):
        weight = parts[layer].reshape(-1, out, width_in)
        bias = parts[len(shapes) + layer].reshape(-1, out, 1)
        x = torch.baddbmm(bias, weight, x)
        if layer < len(shapes) - 1:
            x = x.relu_()
    return x.reshape(len(points), height, width)


def _masks(logits: torch.Tensor, spec: StudentSpec, info: LetterboxInfo, chunk: int = 16) -> torch.Tensor:
    """Bool masks on the original image: logits upsampled by the mask stride to the input frame, resized by
    the letterbox's inverse scale, cropped to the image and thresholded (in chunks of instances, to bound
    memory). Two bilinear steps, as mmdet does: one step straight to the image differs on flat logits."""
    sy, sx = info.scale
    # mmdet sizes the height by the width's scale and the width by the height's (they differ by the rounding of
    # the resized sides, under a pixel); followed here so the masks equal those tools/test.py evaluates
    full = (math.ceil(spec.input_size / sx), math.ceil(spec.input_size / sy))
    threshold = _logit(spec.mask_thr_binary)
    height, width = info.original
    out = torch.empty((len(logits), height, width), dtype=torch.bool)
    for start in range(0, len(logits), chunk):
        up = F.interpolate(logits[None, start:start + chunk], scale_factor=spec.strides[0], mode="bilinear",
                           align_corners=False)
        up = F.interpolate(up, size=full, mode="bilinear", align_corners=False)[0]
        out[start:start + chunk] = up[:, :height, :width] > threshold
    return out


def decode_instances(outputs: Sequence[np.ndarray | torch.Tensor], spec: StudentSpec, info: LetterboxInfo, *,
                     score_thr: float | None = None, with_masks: bool = True) -> Instances:
    """One image's raw head outputs (in :func:`output_names` order, batch of one) -> :class:`Instances`.

    Args:
        outputs: the graph's outputs for one image.
        spec: the exported model's :class:`StudentSpec`.
        info: where :func:`letterbox` put the image.
        score_thr: minimum class score (default ``spec.score_thr``). Raising it early gives the same instances
            above it as filtering afterwards, but less work.
        with_masks: also compute the masks.
    """
    from torchvision.ops import batched_nms

    levels = len(spec.strides)
    tensors = [torch.as_tensor(o).float()[0] for o in outputs]
    cls_scores, bbox_preds, kernel_preds = tensors[:levels], tensors[levels:2 * levels], tensors[2 * levels:3 * levels]
    mask_feat = tensors[3 * levels]
    score_thr = spec.score_thr if score_thr is None else score_thr
    side = float(spec.input_size)  # boxes are clipped to the padded input, as mmdet's test pipeline does
    found: list[list[torch.Tensor]] = [[], [], [], [], [], []]
    for stride, cls_score, bbox_pred, kernel_pred in zip(spec.strides, cls_scores, bbox_preds, kernel_preds):
        scores, cells, classes = _candidates(cls_score, score_thr, spec.nms_pre)
        height, width = cls_score.shape[-2:]
        points = _priors(height, width, stride)[cells]
        dist = bbox_pred.flatten(1).t()[cells]
        boxes = torch.cat([points - dist[:, :2], points + dist[:, 2:]], dim=1)
        boxes = boxes.clamp(0, side)
        for store, value in zip(found, (scores, classes, boxes, points, kernel_pred.flatten(1).t()[cells],
                                        torch.full_like(scores, float(stride)))):
            store.append(value)
    scores, labels, boxes, points, kernels, strides = (torch.cat(parts) for parts in found)
    sy, sx = info.scale
    boxes = boxes / torch.tensor([sx, sy, sx, sy])
    if spec.min_bbox_size >= 0:
        big = ((boxes[:, 2] - boxes[:, 0]) > spec.min_bbox_size) & ((boxes[:, 3] - boxes[:, 1]) > spec.min_bbox_size)
        scores, labels, boxes, points, kernels, strides = (t[big] for t in (scores, labels, boxes, points, kernels,
                                                                             strides))
    keep = batched_nms(boxes, scores, labels, spec.nms_iou)[:spec.max_per_img]
    masks = None
    if with_masks:
        if len(keep):
            logits = _mask_logits(mask_feat, kernels[keep], points[keep], strides[keep], spec)
            masks = _masks(logits, spec, info)
        else:
            masks = torch.zeros((0, *info.original), dtype=torch.bool)
    return Instances(boxes[keep], scores[keep], labels[keep], masks)
