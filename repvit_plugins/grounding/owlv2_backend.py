"""OWLv2 from transformers (``Owlv2ForObjectDetection`` + ``Owlv2Processor``) behind the detector interface.

Every prompt class is one text query. OWLv2 embeds its queries apart from the image
(``Owlv2Model.get_text_features``), so they are embedded once per prompt and kept
(the last :data:`TEXT_CACHE_SIZE` prompts); each batch then runs only the image tower
(``image_embedder``) and the heads (``class_predictor``, ``box_predictor``): the numbers
of ``Owlv2ForObjectDetection.forward``, without its text tower and CLIP image projection.
Decoding is ``post_process_grounded_object_detection``'s: a patch's score is the sigmoid of
its best query logit, its class that query, its box scaled by the longer image side (OWLv2
pads every image to a square at the bottom / right). ``text_threshold`` is not used.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

import numpy as np
import torch

from ..runtime.speed import cast_matmul_weights
from .detector import GroundingDetector, RawDetections
from .hf_backend import load_from_hub, load_pretrained
from .prompts import PromptChunk, check_class_lengths

__all__ = ["DEFAULT_OWLV2_MODEL", "TEXT_CACHE_SIZE", "Owlv2Detector"]

DEFAULT_OWLV2_MODEL = "google/owlv2-base-patch16-ensemble"
TEXT_CACHE_SIZE = 4
"""Prompts whose query embeddings a detector keeps."""


class Owlv2Detector(GroundingDetector):
    """transformers' OWLv2: one text query per prompt class, boxes from every image patch.

    Args:
        model: a hub id (default ``google/owlv2-base-patch16-ensemble``; fetched by huggingface_hub and cached,
            or taken from its cache when offline) or a local folder saved with ``save_pretrained`` (model and
            processor).
        image_size: side of the square the padded image is resized to (default: the processor's, 960 for the
            base model); another size than the model's own interpolates its position embeddings.
        max_size: used as ``image_size`` when that is not given (the input is square: there is no longer side).
        Other arguments: see :class:`GroundingDetector`.
    """

    def __init__(self, model: str = DEFAULT_OWLV2_MODEL, *, image_size: int | None = None,
                 max_size: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        from transformers import Owlv2ForObjectDetection, Owlv2Processor

        def load(source: str, local_only: bool) -> tuple[Any, Any]:
            # Any: transformers types the processor without the tokenizer / image_processor it holds
            return (Owlv2Processor.from_pretrained(source, local_files_only=local_only),
                    load_pretrained(Owlv2ForObjectDetection, source, local_only, self.precision))

        self.processor, self.model = load_from_hub(model, f"load the OWLv2 model {model!r}", load,
                                                   DEFAULT_OWLV2_MODEL)
        self.model.eval().to(self.device)
        cast_matmul_weights(self.model, self.precision)  # what autocast would cast on every call, once
        self.name = str(model)
        self.max_text_len = int(self.tokenizer.model_max_length)  # per class: each class is its own query
        side = image_size if image_size is not None else max_size
        self._image_kwargs: dict[str, Any] = {} if side is None else {"size": {"height": side, "width": side}}
        native = self.model.config.vision_config.image_size
        self._interpolate = side is not None and side != native
        self._text_cache: OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    def prompt_chunks(self, names: Sequence[str]) -> list[PromptChunk]:
        """One chunk of all classes, each a query of at most :attr:`max_text_len` tokens.

        Raises:
            ValueError: a class name longer than the text encoder allows (before any image is read).
        """
        check_class_lengths(names, self.tokenizer, self.max_text_len, "OWLv2's")
        return [PromptChunk(tuple(names), tuple(range(len(names))), "", (), ())]

    def text_queries(self, names: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Q, D)`` unit-length query embeddings of ``names`` and their ``(Q,)`` validity mask, as
        ``Owlv2ForObjectDetection.forward`` makes them; computed once per prompt and autocast state."""
        device_type = self.device.type
        key = (tuple(names), torch.is_autocast_enabled(device_type), torch.get_autocast_dtype(device_type))
        if key in self._text_cache:
            self._text_cache.move_to_end(key)
            return self._text_cache[key]
        tokens = self.processor(text=[list(names)], return_tensors="pt")
        input_ids = tokens["input_ids"].to(self.device)
        embeds = self.model.owlv2.get_text_features(input_ids=input_ids,
                                                    attention_mask=tokens["attention_mask"].to(self.device))
        embeds = embeds / torch.linalg.norm(embeds, ord=2, dim=-1, keepdim=True)
        self._text_cache[key] = (embeds, input_ids[:, 0] > 0)
        while len(self._text_cache) > TEXT_CACHE_SIZE:
            self._text_cache.popitem(last=False)
        return self._text_cache[key]

    def forward_queries(self, images: list[np.ndarray], names: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``logits (B, patches, Q)`` and ``boxes (B, patches, 4)`` (normalized ``cx, cy, w, h`` of the padded
        square) for a batch of RGB images and one query per name."""
        pixel_values = self.processor.image_processor(images=list(images), return_tensors="pt",
                                                      input_data_format="channels_last",
                                                      **self._image_kwargs)["pixel_values"].to(self.device)
        feature_map, _ = self.model.image_embedder(pixel_values=pixel_values,
                                                   interpolate_pos_encoding=self._interpolate)
        batch, height, width, channels = feature_map.shape
        image_feats = feature_map.reshape(batch, height * width, channels)
        embeds, mask = self.text_queries(names)
        logits, _ = self.model.class_predictor(image_feats, embeds.expand(batch, -1, -1), mask.expand(batch, -1))
        boxes = self.model.box_predictor(image_feats, feature_map, interpolate_pos_encoding=self._interpolate)
        return logits, boxes

    def predict_batch(self, images: list[np.ndarray], chunks: Sequence[PromptChunk], box_threshold: float,
                      text_threshold: float) -> list[list[RawDetections]]:
        from transformers.image_transforms import center_to_corners_format

        # Any: transformers annotates it with its TensorType enum where it means a torch / numpy array
        to_corners: Any = center_to_corners_format
        (chunk,) = chunks
        logits, boxes = self.forward_queries(images, chunk.names)
        best = logits.float().cpu().max(dim=-1)
        scores, labels = best.values.sigmoid(), best.indices
        corners: torch.Tensor = to_corners(boxes.float().cpu())
        found: list[list[RawDetections]] = []
        for image, image_scores, image_labels, image_boxes in zip(images, scores, labels, corners):
            keep = image_scores > box_threshold
            side = float(max(image.shape[:2]))
            found.append([(image_boxes[keep] * side, image_scores[keep], image_labels[keep])])
        return found
