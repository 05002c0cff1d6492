"""``SamPredictor`` with an embedding cache, the fast mask decoder and chunked decoding.

Everything ``segment_anything`` users call (``set_image``, ``predict``,
``predict_torch``, ``get_image_embedding``) keeps its meaning, so
``SamAutomaticMaskGenerator`` can use this predictor too.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Callable

import numpy as np
import torch
from segment_anything import SamPredictor
from segment_anything.utils.amg import calculate_stability_score

from ..models.sam_parts import encoder_input_size
from .decoder import DecoderContext, FastMaskDecoder
from .decoder_inputs import decoder_feeds, prompt_count
from .mask_resize import postprocess_masks

__all__ = ["FastSamPredictor", "image_content_key", "DECODERS"]

DECODERS = ("fast", "sam", "onnxruntime")
STABILITY_OFFSET = 1.0
"""Logit offset of the stability score (segment_anything's and EdgeSAM's default)."""


def image_content_key(image: np.ndarray, image_format: str = "RGB") -> str:
    """A content hash of an image (pixels, shape, dtype, channel order)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{image.shape}{image.dtype}{image_format}".encode())
    digest.update(np.ascontiguousarray(image).data)
    return digest.hexdigest()


def _prompt_rows(tensor: torch.Tensor | None, start: int, count: int, batch: int) -> torch.Tensor | None:
    """Rows ``start:start+count`` of a per-prompt tensor; shared tensors (batch 1) as they are."""
    if tensor is None or tensor.shape[0] != batch:
        return tensor
    return tensor[start:start + count]


class FastSamPredictor(SamPredictor):
    """A ``SamPredictor`` that remembers embeddings and decodes many prompts cheaply.

    Args:
        sam_model: a ``segment_anything`` ``Sam`` (its encoder may be an ``OrtImageEncoder``).
        decoder: ``'fast'`` (:class:`FastMaskDecoder`, default), ``'sam'`` (``segment_anything``'s
            modules as they are) or a callable like :class:`~repvit_plugins.sam.ort_backend.OrtPromptDecoder`.
        cache_size: how many image embeddings to keep (keyed by image content).
        chunk_size: prompts decoded per step inside one call (bounds memory; the
            default, 16 at SAM's 64x64 embedding, keeps GEMMs large). Masks are thresholded per chunk.
        precision: the fast decoder's (``'fp32'``, exact; ``'bf16'`` / ``'fp16'`` under ``torch.autocast``).
    """

    # SamPredictor's image state (untyped upstream), None until an image is set
    features: torch.Tensor
    is_image_set: bool
    image_key: str | None
    original_size: tuple[int, int] | None
    input_size: tuple[int, int] | None
    _context: DecoderContext | None

    def __init__(self, sam_model, decoder: str | Callable = "fast", cache_size: int = 4, chunk_size: int | None = None,
                 precision: str = "fp32"):
        if isinstance(decoder, str) and decoder not in ("fast", "sam"):
            raise ValueError(f"decoder must be 'fast', 'sam' or an onnxruntime decoder, got {decoder!r}")
        self.decoder: str | Callable = decoder
        self.fast_decoder = FastMaskDecoder(sam_model, precision)
        self.cache_size = max(0, cache_size)
        self.chunk_size = chunk_size
        self._cache: OrderedDict[str, tuple] = OrderedDict()
        super().__init__(sam_model)

    # -- image -----------------------------------------------------------------------------------
    def reset_image(self) -> None:
        super().reset_image()
        self.image_key = None
        self.original_size = None
        self.input_size = None
        self._context = None

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> str:
        """Embed ``image`` (``H x W x 3`` uint8), or reuse its embedding if this content was seen recently;
        returns its :func:`image_content_key`."""
        key = image_content_key(image, image_format)
        if key == self.image_key and self.is_image_set:
            return key
        cached = self._cache.get(key)
        if cached is None:
            self._embed(image, image_format)
            cached = (self.features, self.original_size, self.input_size)
            if self.cache_size:
                self._cache[key] = cached
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
            self.reset_image()
            self.features, self.original_size, self.input_size = cached
            self.is_image_set = True
        self.image_key = key
        return key

    def _embed(self, image: np.ndarray, image_format: str) -> None:
        """``SamPredictor.set_image``, or, for an encoder that sees the image at its own ``input_size``
        (EfficientViT-SAM L: 512), the image resized and padded to that side with prompts and masks in the
        model's ``img_size`` frame, exactly as that model's own predictor does."""
        side = encoder_input_size(self.model.image_encoder)
        if side == self.model.image_encoder.img_size:
            super().set_image(image, image_format)
            return
        from segment_anything.utils.transforms import ResizeLongestSide

        if image_format != self.model.image_format:
            image = image[..., ::-1]
        small = torch.as_tensor(ResizeLongestSide(side).apply_image(image), device=self.device)
        x = (small.permute(2, 0, 1)[None].float() - self.model.pixel_mean) / self.model.pixel_std
        x = torch.nn.functional.pad(x, (0, side - x.shape[-1], 0, side - x.shape[-2]))
        self.reset_image()
        self.original_size = (image.shape[0], image.shape[1])
        self.input_size = self.transform.get_preprocess_shape(*image.shape[:2], self.transform.target_length)
        with torch.no_grad():
            self.features = self.model.image_encoder(x).contiguous()
        self.is_image_set = True

    @torch.no_grad()
    def set_torch_image(self, transformed_image: torch.Tensor, original_image_size) -> None:
        super().set_torch_image(transformed_image, original_image_size)
        self.features = self.features.contiguous()  # a channels_last encoder hands back NHWC strides
        self.image_key = None

    def has_cached(self, key: str) -> bool:
        """Whether the embedding of the image with this :func:`image_content_key` is remembered."""
        return key in self._cache

    def clear_cache(self) -> None:
        """Forget every remembered embedding (the current image stays set)."""
        self._cache.clear()

    @property
    def context(self) -> DecoderContext:
        """The fast decoder's per-image tensors, computed once per image."""
        if self._context is None or self._context.source is not self.features:
            self._context = self.fast_decoder.prepare(self.features)
        return self._context

    # -- prompts ---------------------------------------------------------------------------------
    def _decode(self, coords, labels, boxes, masks, multimask_output: bool):
        """Low-res logits and IoU predictions for one chunk of prompts."""
        if self.decoder == "sam" or (self.decoder == "fast" and self.features.shape[0] != 1):
            sparse, dense = self.model.prompt_encoder(
                points=(coords, labels) if coords is not None else None, boxes=boxes, masks=masks)
            return self.model.mask_decoder(self.features, self.model.prompt_encoder.get_dense_pe(), sparse, dense,
                                           multimask_output)
        if isinstance(self.decoder, str):  # 'fast' (the names were checked in __init__)
            sparse, _ = self.model.prompt_encoder(points=(coords, labels) if coords is not None else None,
                                                  boxes=boxes, masks=None)
            dense = None
            if masks is not None:
                dense = self.model.prompt_encoder._embed_masks(masks).expand(sparse.shape[0], -1, -1, -1)
            return self.fast_decoder(self.context, sparse, dense, multimask_output)
        grid = self.model.prompt_encoder.mask_input_size
        low, iou = self.decoder(decoder_feeds(self.features, coords, labels, boxes, masks, grid))
        keep = slice(1, None) if multimask_output else slice(0, 1)
        return low[:, keep].to(self.device), iou[:, keep].to(self.device)

    def _prompts_per_step(self) -> int:
        """Prompts decoded per step: ``chunk_size``, or as many as keep the activations in the CPU cache."""
        if self.chunk_size:
            return self.chunk_size
        h, w = self.model.prompt_encoder.image_embedding_size
        return max(1, 65536 // (h * w))  # 16 prompts at 64x64: bigger batches run faster GEMMs, 16 keep it to 64 MB

    @torch.no_grad()
    def predict_torch(self, point_coords, point_labels, boxes=None, mask_input=None, multimask_output: bool = True,
                      return_logits: bool = False, best_only: bool = False):
        """``SamPredictor.predict_torch``, decoded in chunks; ``best_only`` keeps the best-scoring mask per prompt.

        Scores are the IoU predictions, or the masks' stability scores for a model whose ``mask_scoring`` is
        ``'stability'`` (EdgeSAM's predictor).

        Returns masks ``B x C x H x W`` (bool unless ``return_logits``), IoU
        predictions ``B x C`` and low-res logits ``B x C x h x w``.
        """
        if not self.is_image_set:
            raise RuntimeError("An image must be set with .set_image(...) before mask prediction.")
        batch = prompt_count(point_coords, boxes, mask_input)
        if batch == 0:  # segment_anything's decoder cannot reshape an empty batch: answer with empty tensors
            return self._no_masks(multimask_output and not best_only, return_logits)
        step = self._prompts_per_step()
        sizes = self.image_sizes()
        outputs = []
        for start in range(0, batch, step):
            coords, labels, box_rows, masks_in = (_prompt_rows(t, start, step, batch)
                                                  for t in (point_coords, point_labels, boxes, mask_input))
            low, iou = self._decode(coords, labels, box_rows, masks_in, multimask_output)
            if getattr(self.model, "mask_scoring", "iou") == "stability":  # EdgeSAM scores masks by stability
                iou = calculate_stability_score(low, self.model.mask_threshold, STABILITY_OFFSET)
            if best_only and low.shape[1] > 1:
                best = iou.argmax(dim=1)
                rows = torch.arange(low.shape[0], device=low.device)
                low, iou = low[rows, best][:, None], iou[rows, best][:, None]
            masks = postprocess_masks(low, self.model.image_encoder.img_size, *sizes)
            if not return_logits:
                masks = masks > self.model.mask_threshold
            outputs.append((masks, iou, low))
        masks, iou, low = (torch.cat(parts) for parts in zip(*outputs))
        return masks, iou, low

    def image_sizes(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """``(input_size, original_size)`` of the set image (``RuntimeError`` when none is set)."""
        if self.input_size is None or self.original_size is None:
            raise RuntimeError("An image must be set with .set_image(...) before mask prediction.")
        return self.input_size, self.original_size

    def _no_masks(self, multimask_output: bool, return_logits: bool):
        """The empty ``(masks, scores, low-res logits)`` of a call with no prompts."""
        count = self.model.mask_decoder.num_mask_tokens - 1 if multimask_output else 1
        low = torch.zeros(0, count, *self.model.prompt_encoder.mask_input_size, device=self.device)
        masks = torch.zeros(0, count, *self.image_sizes()[1], device=self.device,
                            dtype=torch.float if return_logits else torch.bool)
        return masks, torch.zeros(0, count, device=self.device), low
