"""The one small interface of the grounding detectors, their shared post-processing and the factory.

``detect(images, prompt, box_threshold, text_threshold) -> list[supervision.Detections]``,
one per image: ``xyxy`` in pixels (``float32``, clipped to the image),
``confidence``, ``class_id`` (an index into ``parse_prompt(prompt)``) and
``data['class_name']``. A backend turns a batch of images and one prompt chunk
into raw ``(logits, boxes)`` (or, if its framework decodes, into boxes per
class); prompt parsing, chunking, decoding, NMS and top-k happen here.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Sequence

import numpy as np
import torch

from .prompts import DEFAULT_MAX_TOKENS, PromptChunk, parse_prompt, score_queries, tokenize_prompt

__all__ = ["BACKENDS", "DetectorLoadError", "GroundingDetector", "build_detector", "select_detections"]

BACKENDS = ("hf", "original", "mmdet")
_NMS_MODES = ("class", "agnostic", None)
Found = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""One image's detections before NMS: xyxy in pixels ``(N, 4)``, confidence ``(N,)``, class ids ``(N,)``."""


class DetectorLoadError(RuntimeError):
    """A detector's model, weights or text encoder could not be loaded; the message says what to fetch."""


def load_error(what: str, err: BaseException, hint: str) -> DetectorLoadError:
    """``DetectorLoadError``: "could not <what>: <first line of err>", then ``hint`` (what to do next)."""
    text = str(err).strip()
    reason = text.splitlines()[0] if text else type(err).__name__
    return DetectorLoadError(f"could not {what}: {reason}\n{hint}")


def select_detections(xyxy: torch.Tensor, scores: torch.Tensor, class_ids: torch.Tensor, *,
                      nms: str | None = "class", nms_iou: float = 0.5,
                      max_detections: int | None = 100) -> torch.Tensor:
    """Indices of the detections to keep, best first: NMS (per class, class-agnostic or none), then top-k."""
    from torchvision.ops import batched_nms, nms as plain_nms

    if len(scores) == 0:
        return torch.zeros(0, dtype=torch.long)
    if nms == "class":
        keep = batched_nms(xyxy.float(), scores.float(), class_ids, nms_iou)
    elif nms == "agnostic":
        keep = plain_nms(xyxy.float(), scores.float(), nms_iou)
    else:
        keep = torch.sort(scores, descending=True, stable=True).indices
    return keep if max_detections is None else keep[:max_detections]


def _as_images(images: Any) -> list[np.ndarray]:
    """A list of RGB ``uint8`` arrays from one image or a list (paths, PIL images and arrays accepted)."""
    from ..io import load_image

    if isinstance(images, np.ndarray) and images.ndim == 4:
        images = list(images)
    elif not isinstance(images, (list, tuple)):
        images = [images]
    out = []
    for image in images:
        ok = isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3
        out.append(image if ok else load_image(image))
    return out


def _detections(xyxy: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, names: Sequence[str]):
    import supervision as sv

    return sv.Detections(
        xyxy=xyxy.astype(np.float32).reshape(-1, 4),
        confidence=scores.astype(np.float32),
        class_id=class_ids.astype(int),
        data={"class_name": np.array([names[i] for i in class_ids], dtype=str)},
    )


class GroundingDetector(ABC):
    """Text-prompted box detector (Grounding DINO) behind one interface.

    A backend provides :attr:`tokenizer` and either :meth:`forward` (raw token logits and
    boxes; decoding is shared) or, when its framework decodes itself, :meth:`predict_batch`.

    Args:
        device: torch device of the model.
        batch_size: images per forward pass.
        nms: ``'class'`` (per-class NMS), ``'agnostic'`` (across classes) or ``None``.
        nms_iou: IoU above which the lower-scoring box is suppressed.
        max_detections: most detections kept per image (``None``: all).
    """

    max_text_len: int = DEFAULT_MAX_TOKENS

    def __init__(self, *, device: str | torch.device = "cpu", batch_size: int = 4, nms: str | None = "class",
                 nms_iou: float = 0.5, max_detections: int | None = 100):
        if nms == "none":
            nms = None
        if nms not in _NMS_MODES:
            raise ValueError(f"nms must be 'class', 'agnostic' or None, got {nms!r}")
        if not 0.0 < nms_iou <= 1.0:
            raise ValueError(f"nms_iou must be in (0, 1], got {nms_iou}")
        if max_detections is not None and max_detections < 1:
            raise ValueError(f"max_detections must be a positive number or None, got {max_detections}")
        self.device = torch.device(device)
        self.batch_size = max(1, int(batch_size))
        self.nms = nms
        self.nms_iou = float(nms_iou)
        self.max_detections = max_detections
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
               box_threshold: float, text_threshold: float) -> Found:
        """One image's queries -> ``(xyxy pixels, confidence, class ids in the full class list)``."""
        keep, scores, labels = score_queries(logits[:, :len(chunk.input_ids)], chunk.spans,
                                             box_threshold, text_threshold)
        cx, cy, w, h = boxes.float()[keep].unbind(-1)
        xyxy = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)
        xyxy = xyxy * torch.tensor([width, height, width, height], dtype=torch.float32)
        xyxy[:, 0::2] = xyxy[:, 0::2].clamp(0, width)
        xyxy[:, 1::2] = xyxy[:, 1::2].clamp(0, height)
        class_ids = torch.tensor(chunk.class_ids, dtype=torch.long)[labels]
        return xyxy, scores, class_ids

    def predict_batch(self, images: list[np.ndarray], chunks: Sequence[PromptChunk], box_threshold: float,
                      text_threshold: float) -> list[list[Found]]:
        """Per image, one :data:`Found` per chunk (before NMS): :meth:`forward` then :meth:`decode`."""
        found: list[list[Found]] = [[] for _ in images]
        for chunk in chunks:
            logits, boxes = self.forward(images, chunk)
            logits, boxes = logits.float().cpu(), boxes.float().cpu()
            for i, image in enumerate(images):
                found[i].append(self.decode(logits[i], boxes[i], chunk, image.shape[0], image.shape[1],
                                            box_threshold, text_threshold))
        return found

    @torch.no_grad()
    def detect(self, images: Any, prompt: str | Sequence[str], box_threshold: float = 0.35,
               text_threshold: float = 0.25) -> list:
        """Boxes for ``prompt`` on each image: a list of ``supervision.Detections``, one per image.

        Args:
            images: an RGB ``uint8`` array, a list of them (anything :func:`repvit_plugins.io.load_image` reads).
            prompt: a caption (``"a cat. a dog."``) or a list of class names.
            box_threshold: keep queries whose confidence is above this.
            text_threshold: tokens above this are a query's phrase; a query needs one in its class.
        """
        for label, value in (("box_threshold", box_threshold), ("text_threshold", text_threshold)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{label} must be in [0, 1], got {value}")
        arrays = _as_images(images)
        names = parse_prompt(prompt)
        chunks = self.prompt_chunks(names)
        results = []
        for start in range(0, len(arrays), self.batch_size):
            batch = arrays[start:start + self.batch_size]
            for parts in self.predict_batch(batch, chunks, box_threshold, text_threshold):
                xyxy, scores, class_ids = (torch.cat(t) for t in zip(*parts))
                keep = select_detections(xyxy, scores, class_ids, nms=self.nms, nms_iou=self.nms_iou,
                                         max_detections=self.max_detections)
                results.append(_detections(xyxy[keep].numpy(), scores[keep].numpy(), class_ids[keep].numpy(), names))
        return results


def build_detector(backend: str = "hf", *, model: str | None = None, checkpoint: str | None = None,
                   text_encoder: str | None = None, device: str = "cpu", batch_size: int = 4,
                   nms: str | None = "class", nms_iou: float = 0.5, max_detections: int | None = 100,
                   **options: Any) -> GroundingDetector:
    """Build a grounding detector.

    Args:
        backend: ``'hf'`` (transformers), ``'original'`` (groundingdino-py) or ``'mmdet'`` (mmdet 3.x).
        model: ``hf``: a hub id or local directory (default ``IDEA-Research/grounding-dino-tiny``);
            ``original`` / ``mmdet``: a config file (``original`` defaults to the package's SwinT OGC config).
        checkpoint: weights for ``original`` (a path or zoo name, default ``groundingdino_swint_ogc``) and ``mmdet``.
        text_encoder: a local BERT directory for ``original`` / ``mmdet`` (offline use).
        device, batch_size, nms, nms_iou, max_detections: see :class:`GroundingDetector`.
        **options: backend extras, e.g. ``image_size`` / ``max_size`` (test-time resize).
    """
    common = dict(device=device, batch_size=batch_size, nms=nms, nms_iou=nms_iou, max_detections=max_detections)
    if backend == "hf":
        if checkpoint is not None or text_encoder is not None:
            raise ValueError("the 'hf' backend takes its weights and text encoder from model= (a hub id or folder); "
                             "checkpoint= and text_encoder= are for the 'original' and 'mmdet' backends")
        from .hf_backend import DEFAULT_HF_MODEL, HFGroundingDetector

        return HFGroundingDetector(model or DEFAULT_HF_MODEL, **common, **options)
    if backend == "original":
        from .original_backend import OriginalGroundingDetector

        return OriginalGroundingDetector(model, checkpoint, text_encoder, **common, **options)
    if backend == "mmdet":
        from .mmdet_backend import MMDetGroundingDetector

        if model is None:
            raise ValueError("the 'mmdet' backend needs model= (an mmdet GroundingDINO config file)")
        return MMDetGroundingDetector(model, checkpoint, text_encoder, **common, **options)
    raise ValueError(f"unknown detector backend {backend!r}; choose one of {', '.join(BACKENDS)}")
