"""``SamSegmenter``: one object for box, point and "everything" segmentation with RepViT-SAM.

The grounded pipeline calls ``set_image`` + ``predict_boxes``; the Gradio demo
adds ``predict_points`` and ``generate_everything``. Image embeddings are cached
by image content, so clicking on the same image never re-runs the encoder.
"""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from ..models.sam_parts import encoder_input_size
from ..options import SAM_BACKENDS
from .predictor import DECODERS, FastSamPredictor, image_content_key
from .prompts import PromptError, check_boxes, check_image, check_mask_input, check_points

if TYPE_CHECKING:  # segment_anything ships no types: mypy sees its classes as Any
    from segment_anything.modeling import Sam

__all__ = ["SamSegmenter", "BACKENDS"]

BACKENDS = SAM_BACKENDS


def weights_digest(*modules: nn.Module) -> str:
    """A short hash of the modules' weights: names an exported graph, so same weights reuse one file."""
    digest = hashlib.sha256()
    for module in modules:
        for name, tensor in module.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().to("cpu").contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _cached_onnx(sam: Sam, kind: str) -> Path:
    """Export the encoder or decoder once into the model cache, keyed by the weights."""
    from ..weights.zoo import cache_dir
    from .onnx_export import export_decoder, export_encoder

    part = sam.image_encoder if kind == "encoder" else nn.ModuleList([sam.prompt_encoder, sam.mask_decoder])
    size = sam.image_encoder.img_size
    path = cache_dir() / "onnx" / f"sam_{kind}_{size}_{weights_digest(part)}.onnx"
    if not path.is_file():
        print(f"exporting the SAM {kind} to {path} (once; this takes up to a minute)", file=sys.stderr, flush=True)
        (export_encoder if kind == "encoder" else export_decoder)(sam, path)
    return path


class SamSegmenter:
    """RepViT-SAM (or any ``segment_anything`` ``Sam``) behind a small numpy API.

    Args:
        sam: a ``Sam``; built with :func:`~repvit_plugins.models.build_repvit_sam` when ``None``.
            ``fuse`` and ``channels_last`` change its encoder in place.
        checkpoint: weights for the model (path, zoo name ``'repvit_sam'`` or state dict).
        backend: ``'torch'`` or ``'onnxruntime'`` for the image encoder.
        fuse: fuse the encoder's Conv-BN and RepVGG branches, and each convolution + GELU into one oneDNN
            kernel on the CPU (:mod:`~repvit_plugins.runtime.fused_activation`; same outputs to float rounding).
        channels_last: run the torch encoder in NHWC memory layout (faster on CPU).
        device: torch device of the model.
        model: a :data:`~repvit_plugins.models.sam_registry.SAM_MODELS` name (``'repvit_sam'``, ``'mobile_sam'``,
            ``'sam_vit_b'``, ...) when the model is built here; default: the RepViT-SAM of ``arch``.
        arch: RepViT variant of a RepViT-SAM built here (``model=None``).
        img_size: encoder input side when the model is built here (default: the entry's).
        decoder: ``'fast'`` (same results as SAM's decoder, less work per prompt),
            ``'sam'`` (segment_anything's decoder as it is) or ``'onnxruntime'``.
        compile: ``torch.compile`` the encoder (one-off compile time, then faster).
        precision: ``'fp32'``, or ``'bf16'`` / ``'fp16'``: the torch encoder runs under ``torch.autocast``
            (faster on CPUs with native bf16 and on GPUs; embeddings within about 1% of float32's spread).
        decoder_precision: the same for the fast prompt decoder (``'fp32'``: exact; bf16 is about 1.5x faster
            for many boxes, masks at IoU >= 0.98 of float32's on random weights).
        encoder_onnx / decoder_onnx: ONNX files to use; exported into the model cache when ``None``.
        threads: onnxruntime threads (default: torch's).
        cache_size: image embeddings kept (4 MB each at 1024).
        chunk_size: prompts per decoder step inside one call.
    """

    def __init__(self, sam: Sam | None = None, checkpoint: str | os.PathLike | Mapping | None = None,
                 backend: str = "torch", fuse: bool = True, channels_last: bool = True, device: str = "cpu", *,
                 model: str | None = None, arch: str = "m2_3", img_size: int | None = None, decoder: str = "fast",
                 compile: bool = False, precision: str = "fp32", decoder_precision: str = "fp32",
                 encoder_onnx: str | os.PathLike | None = None, decoder_onnx: str | os.PathLike | None = None,
                 threads: int | None = None, cache_size: int = 4, chunk_size: int | None = None):
        from ..models.sam_parts import load_sam_checkpoint
        from ..models.sam_registry import build_sam, repvit_sam_name

        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
        if sam is None:
            sam = build_sam(model or repvit_sam_name(arch), checkpoint, device=device, img_size=img_size)
        elif checkpoint is not None:
            load_sam_checkpoint(sam, checkpoint)
        self.sam = sam.eval()
        self.backend = backend
        sam_model = self._torch_model(fuse, channels_last, compile, precision) if backend == "torch" else \
            self._ort_model(encoder_onnx, threads)
        prompt_decoder: str | Callable = decoder  # a name FastSamPredictor knows, or the onnxruntime decoder
        if decoder == "onnxruntime":
            from .ort_backend import OrtPromptDecoder

            prompt_decoder = OrtPromptDecoder(decoder_onnx or _cached_onnx(self.sam, "decoder"), threads)
        self.predictor = FastSamPredictor(sam_model, decoder=prompt_decoder, cache_size=cache_size,
                                          chunk_size=chunk_size, precision=decoder_precision)

    def _torch_model(self, fuse: bool, channels_last: bool, compile: bool, precision: str) -> Sam:
        from ..models.repvit import reparameterize
        from ..runtime.fused_activation import fuse_activations
        from ..runtime.speed import AutocastModule

        encoder = self.sam.image_encoder
        if fuse:
            reparameterize(encoder)
            if not compile:  # inductor fuses on its own, from the plain layers
                fuse_activations(encoder)
        if channels_last:
            encoder.to(memory_format=torch.channels_last)
        if compile:
            encoder.compile()
        return self.sam if precision == "fp32" else self._with_encoder(AutocastModule(encoder, precision))

    def _ort_model(self, encoder_onnx: str | os.PathLike | None, threads: int | None) -> Sam:
        from .ort_backend import OrtImageEncoder

        path = encoder_onnx or _cached_onnx(self.sam, "encoder")
        return self._with_encoder(OrtImageEncoder(path, self.sam.image_encoder.img_size, threads,
                                                  input_size=encoder_input_size(self.sam.image_encoder)))

    def _with_encoder(self, encoder: nn.Module) -> Sam:
        """A ``Sam`` sharing this model's prompt encoder and mask decoder, with another image encoder."""
        from segment_anything.modeling import Sam as SamModel

        model = SamModel(encoder, self.sam.prompt_encoder, self.sam.mask_decoder,
                         pixel_mean=self.sam.pixel_mean.flatten().tolist(),
                         pixel_std=self.sam.pixel_std.flatten().tolist())
        return model.to(self.sam.device).eval()

    # -- image -----------------------------------------------------------------------------------
    @property
    def model(self) -> Sam:
        """The ``Sam`` the predictor runs (its encoder is onnxruntime-backed with that backend)."""
        return self.predictor.model

    @property
    def is_image_set(self) -> bool:
        return self.predictor.is_image_set

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of the current image."""
        self._require_image()
        height, width = self.predictor.image_sizes()[1]
        return height, width

    def set_image(self, image: np.ndarray) -> str:
        """Embed an ``H x W x 3`` uint8 RGB image (cached by content); returns its key."""
        return self.predictor.set_image(check_image(image))

    def has_embedding(self, image: np.ndarray) -> bool:
        """Whether ``image``'s embedding is cached (``set_image`` will then be instant)."""
        return self.predictor.has_cached(image_content_key(check_image(image)))

    def get_image_embedding(self) -> torch.Tensor:
        """The current embedding, ``1 x 256 x 64 x 64`` at 1024."""
        self._require_image()
        return self.predictor.get_image_embedding()

    def _require_image(self) -> None:
        if not self.predictor.is_image_set:
            raise PromptError("no image is set: call set_image(image) first")

    # -- prompts ---------------------------------------------------------------------------------
    def predict_boxes(self, boxes_xyxy: np.ndarray, multimask_output: bool = False,
                      clip: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """One mask per box, all boxes in one call: ``(masks bool N x H x W, scores float N)``.

        With ``multimask_output`` SAM proposes three masks per box and the
        best-scoring one is kept. Boxes are xyxy pixels of the image; see
        :func:`~repvit_plugins.sam.prompts.check_boxes` for ``clip``.
        """
        h, w = self.image_size
        boxes = check_boxes(boxes_xyxy, (h, w), clip=clip)
        if len(boxes) == 0:
            return np.zeros((0, h, w), dtype=bool), np.zeros((0,), dtype=np.float32)
        predictor = self.predictor
        boxes_t = torch.as_tensor(predictor.transform.apply_boxes(boxes, (h, w)), dtype=torch.float,
                                  device=predictor.device)
        masks, scores, _ = predictor.predict_torch(None, None, boxes_t, None, multimask_output, best_only=True)
        return masks[:, 0].cpu().numpy(), scores[:, 0].float().cpu().numpy()

    def predict_points(self, point_coords: np.ndarray | None, point_labels: np.ndarray | None,
                       box: np.ndarray | None = None, mask_input: np.ndarray | None = None,
                       multimask_output: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for clicks (and optionally one box and a previous low-res mask).

        Returns ``(masks bool C x H x W, scores C, low_res_logits C x 256 x 256)``
        with ``C`` = 3 when ``multimask_output`` else 1; pass a row of
        ``low_res_logits`` back as ``mask_input`` to refine.
        """
        size = self.image_size
        if point_coords is None and point_labels is None:
            if box is None:
                raise PromptError("give at least one point (point_coords, point_labels) or a box")
            coords = labels = None
        else:
            coords, labels = check_points(point_coords, point_labels, size)
        if box is not None:
            boxes = check_boxes(box, size)
            if len(boxes) != 1:
                raise PromptError(f"predict_points takes one box, got {len(boxes)}; use predict_boxes for many")
            box = boxes[0]
        if mask_input is not None:
            mask_input = check_mask_input(mask_input, self.model.prompt_encoder.mask_input_size)
        return self.predictor.predict(coords, labels, box, mask_input, multimask_output)

    def generate_everything(self, image: np.ndarray, points_per_side: int = 32, pred_iou_thresh: float = 0.88,
                            stability_score_thresh: float = 0.95, points_per_batch: int = 16,
                            **kwargs) -> list[dict[str, Any]]:
        """Segment everything with ``segment_anything``'s ``SamAutomaticMaskGenerator``.

        Returns its list of dicts (``segmentation``, ``area``, ``bbox``,
        ``predicted_iou``, ``stability_score``, ...); ``kwargs`` go to the
        generator (e.g. ``min_mask_region_area``, ``crop_n_layers``). The image
        stays set afterwards.
        """
        from segment_anything import SamAutomaticMaskGenerator

        image = check_image(image)
        generator = SamAutomaticMaskGenerator(self.model, points_per_side=points_per_side,
                                              points_per_batch=points_per_batch, pred_iou_thresh=pred_iou_thresh,
                                              stability_score_thresh=stability_score_thresh, **kwargs)
        generator.predictor = self.predictor
        try:
            return generator.generate(image)
        finally:
            self.predictor.set_image(image)
