"""The one small interface of the grounding detectors and their shared post-processing.

``detect(images, prompt, options) -> list[supervision.Detections]``, one per
image: ``xyxy`` in pixels (``float32``, clipped to the image), ``confidence``,
``class_id`` (an index into ``parse_prompt(prompt)``) and
``data['class_name']``. A backend turns a batch of images and one prompt chunk
into raw ``(logits, boxes)`` (or, if its framework decodes, into boxes per
class); prompt parsing, chunking, padding of extreme shapes, decoding, NMS and
top-k happen here. The factory lives in :mod:`repvit_plugins.grounding.factory`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from ..options import PipelineOptions
from ..runtime.speed import autocast
from .inputs import as_images, batched
from .mask_source import uses_sam
from .prompts import DEFAULT_MAX_TOKENS, PromptChunk, parse_prompt, score_queries, tokenize_prompt

if TYPE_CHECKING:  # supervision is imported when detections are built, not with the package
    import supervision as sv

__all__ = ["DetectorLoadError", "GroundingDetector", "RawDetections", "pad_for_detection", "select_detections"]

RawDetections = tuple[torch.Tensor, ...]
"""One image's detections before NMS: xyxy in pixels ``(N, 4)``, confidence ``(N,)``, class ids ``(N,)``; a
detector that predicts masks adds them as a fourth, ``(N, H, W)`` bool on the image it was given."""

MAX_ASPECT_RATIO = 8.0
"""Longer / shorter side beyond which an image is padded before detection (a 4000x8 strip would
otherwise shrink to a few pixels, or to none, in the detector's resize)."""
MIN_SIDE = 32
"""Shorter side below which an image is padded before detection (the backbone's coarsest stride)."""


class DetectorLoadError(RuntimeError):
    """A detector's model, weights or text encoder could not be loaded; the message says what to fetch."""


def load_error(what: str, err: BaseException, hint: str) -> DetectorLoadError:
    """``DetectorLoadError``: "could not <what>: <first line of err>", then ``hint`` (what to do next)."""
    text = str(err).strip()
    reason = text.splitlines()[0] if text else type(err).__name__
    return DetectorLoadError(f"could not {what}: {reason}\n{hint}")


def select_detections(xyxy: torch.Tensor, scores: torch.Tensor, class_ids: torch.Tensor, *,
                      nms: str = "class", nms_iou: float = 0.5,
                      max_detections: int | None = 100) -> torch.Tensor:
    """Indices of the detections to keep, best first: NMS (``'class'``, ``'agnostic'`` or ``'none'``), then top-k."""
    from torchvision.ops import batched_nms
    from torchvision.ops import nms as plain_nms

    if len(scores) == 0:
        return torch.zeros(0, dtype=torch.long)
    if nms == "class":
        keep = batched_nms(xyxy.float(), scores.float(), class_ids, nms_iou)
    elif nms == "agnostic":
        keep = plain_nms(xyxy.float(), scores.float(), nms_iou)
    else:
        keep = torch.sort(scores, descending=True, stable=True).indices
    return keep if max_detections is None else keep[:max_detections]


def pad_for_detection(image: np.ndarray) -> np.ndarray:
    """``image`` padded at the bottom / right (black) to a shape every detector's resize can handle.

    Pixel coordinates in the padded image are those of the original, so boxes only need clipping.
    """
    height, width = image.shape[:2]
    target_h = max(height, MIN_SIDE, int(np.ceil(width / MAX_ASPECT_RATIO)))
    target_w = max(width, MIN_SIDE, int(np.ceil(height / MAX_ASPECT_RATIO)))
    if (target_h, target_w) == (height, width):
        return image
    padded = np.zeros((target_h, target_w, 3), dtype=image.dtype)
    padded[:height, :width] = image
    return padded


def _inside(xyxy: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes clipped to ``height x width`` and the mask of those with an area left."""
    xyxy = xyxy.clone()
    xyxy[:, 0::2] = xyxy[:, 0::2].clamp(0, width)
    xyxy[:, 1::2] = xyxy[:, 1::2].clamp(0, height)
    return xyxy, (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])


def _detections(xyxy: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, names: Sequence[str]) -> sv.Detections:
    import supervision as sv
    from supervision.config import CLASS_NAME_DATA_FIELD

    return sv.Detections(
        xyxy=xyxy.astype(np.float32).reshape(-1, 4),
        confidence=scores.astype(np.float32),
        class_id=class_ids.astype(int),
        data={CLASS_NAME_DATA_FIELD: np.array([names[i] for i in class_ids], dtype=str)},
    )


class GroundingDetector(ABC):
    """Text-prompted box detector (Grounding DINO) behind one interface.

    A backend provides :attr:`tokenizer` and either :meth:`forward` (raw token logits and
    boxes; decoding is shared) or, when its framework decodes itself, :meth:`predict_batch`.

    Args:
        device: torch device of the model.
        precision: ``'fp32'``, or ``'bf16'`` / ``'fp16'`` to run the model under ``torch.autocast``
            (see :mod:`repvit_plugins.runtime.speed`; bf16 pays off on CPUs with native bf16 and on GPUs).
        options: defaults for :meth:`detect` (thresholds, NMS, top-k, batch size); see
            :class:`~repvit_plugins.options.PipelineOptions`.
        **overrides: single options instead, e.g. ``nms='agnostic', max_detections=10``.
    """

    max_text_len: int = DEFAULT_MAX_TOKENS
    predicts_masks: bool = False
    """Whether :meth:`detect` can return the model's own masks (``options.masks == 'detector'``)."""

    def __init__(self, *, device: str | torch.device = "cpu", precision: str = "fp32",
                 options: PipelineOptions | None = None, **overrides: Any):
        self.device = torch.device(device)
        autocast(self.device, precision)  # checks the name
        self.precision = precision
        self.options = (options or PipelineOptions()).replace(**overrides)
        self._chunk_cache: dict[tuple[tuple[str, ...], int], list[PromptChunk]] = {}

    @property
    @abstractmethod
    def tokenizer(self) -> Any:
        """The BERT tokenizer of the model's text encoder."""

    def forward(self, images: list[np.ndarray], chunk: PromptChunk) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw model output for a batch of RGB images and one prompt chunk.

        Returns:
            ``logits (B, Q, T)`` over the chunk's tokens (``T >= len(chunk.input_ids)``) and
            ``boxes (B, Q, 4)`` as normalized ``(cx, cy, w, h)`` relative to each image.
        """
        raise NotImplementedError(f"{type(self).__name__} implements neither forward() nor predict_batch()")

    def prompt_chunks(self, names: Sequence[str]) -> list[PromptChunk]:
        """``names`` tokenized into chunks that fit :attr:`max_text_len` (cached)."""
        key = (tuple(names), self.max_text_len)
        if key not in self._chunk_cache:
            self._chunk_cache[key] = tokenize_prompt(names, self.tokenizer, self.max_text_len)
        return self._chunk_cache[key]

    @staticmethod
    def decode(logits: torch.Tensor, boxes: torch.Tensor, chunk: PromptChunk, height: int, width: int,
               box_threshold: float, text_threshold: float) -> RawDetections:
        """One image's queries -> ``(xyxy pixels, confidence, class ids in the full class list)``."""
        keep, scores, labels = score_queries(logits[:, :len(chunk.input_ids)], chunk.spans,
                                             box_threshold, text_threshold)
        cx, cy, w, h = boxes.float()[keep].unbind(-1)
        xyxy = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)
        xyxy = xyxy * torch.tensor([width, height, width, height], dtype=torch.float32)  # clipped in detect()
        class_ids = torch.tensor(chunk.class_ids, dtype=torch.long)[labels]
        return xyxy, scores, class_ids

    def predict_batch(self, images: list[np.ndarray], chunks: Sequence[PromptChunk], box_threshold: float,
                      text_threshold: float) -> list[list[RawDetections]]:
        """Per image, one :data:`RawDetections` per chunk (before NMS): :meth:`forward` then :meth:`decode`."""
        found: list[list[RawDetections]] = [[] for _ in images]
        for chunk in chunks:
            logits, boxes = self.forward(images, chunk)
            logits, boxes = logits.float().cpu(), boxes.float().cpu()
            for i, image in enumerate(images):
                found[i].append(self.decode(logits[i], boxes[i], chunk, image.shape[0], image.shape[1],
                                            box_threshold, text_threshold))
        return found

    @torch.no_grad()
    def detect(self, images: Any, prompt: str | Sequence[str], options: PipelineOptions | None = None,
               **overrides: Any) -> list[sv.Detections]:
        """Boxes for ``prompt`` on each image: a list of ``supervision.Detections``, one per image.

        Args:
            images: an RGB ``uint8`` array, a list of them (anything :func:`repvit_plugins.io.load_image` reads).
            prompt: a caption (``"a cat. a dog."``), comma-separated names or a list of class names.
            options: thresholds, NMS, top-k and batch size (default: the detector's own).
            **overrides: single options instead, e.g. ``box_threshold=0.3``.
        """
        options = (options or self.options).replace(**overrides)
        names = parse_prompt(prompt)
        chunks = self.prompt_chunks(names)
        results: list[sv.Detections] = []
        for batch in batched(as_images(images), options.batch_size):
            padded = [pad_for_detection(image) for image in batch]
            with autocast(self.device, self.precision):
                found = self.predict_batch(padded, chunks, options.box_threshold, options.text_threshold)
            for image, parts in zip(batch, found):
                xyxy, scores, class_ids, *masks = (torch.cat(t) for t in zip(*parts))
                xyxy, inside = _inside(xyxy, *image.shape[:2])
                xyxy, scores, class_ids = xyxy[inside], scores[inside], class_ids[inside]
                keep = select_detections(xyxy, scores, class_ids, nms=options.nms, nms_iou=options.nms_iou,
                                         max_detections=options.max_detections)
                result = _detections(xyxy[keep].numpy(), scores[keep].numpy(), class_ids[keep].numpy(), names)
                if masks and not uses_sam(options):  # masks of the padded image, cropped back
                    result.mask = masks[0][inside][keep][:, :image.shape[0], :image.shape[1]].numpy()
                results.append(result)
        return results
