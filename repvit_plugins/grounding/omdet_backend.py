"""OmDet-Turbo from transformers (``OmDetTurboForObjectDetection`` + its processor): the fast open-vocabulary detector.

The prompt's classes are OmDet's ``classes``; its task prompt is the processor's default (``"Detect a, b."``).
Each class is encoded by CLIP on its own, so there is one prompt chunk whatever the number of classes (the task
text, like in the processor, is cut at CLIP's 77 tokens). The model keeps the CLIP features of recent classes and
tasks in its own language cache, so a prompt's text is encoded once and later calls skip the text encoder.

Decoding follows the processor's ``post_process_grounded_object_detection``: every (query, class) pair is a
candidate, the ``num_queries`` best pairs are kept, then those scoring above ``box_threshold``. NMS, top-k and
clipping are the shared ones of :meth:`GroundingDetector.detect`, which clip before NMS (the processor clips
after it); with that one difference the boxes, scores and labels are the processor's (see the tests).
``max_detections`` keeps the best boxes after NMS (the processor's ``max_num_det`` cuts candidates before it).
Raw outputs are cast to float32 before decoding, so NMS never sees bf16 boxes (torchvision's ``nms`` has no
bf16 CPU kernel). The model runs the exact CPU rewrites of :mod:`~repvit_plugins.grounding.omdet_speed`.
"""
from __future__ import annotations

from itertools import chain
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from ..runtime.speed import cast_matmul_weights
from .detector import MIN_SIDE, DetectorLoadError, GroundingDetector, RawDetections
from .hf_backend import load_from_hub, load_pretrained
from .omdet_speed import speed_up_omdet
from .prompt_limits import CLIP_MAX_TOKENS
from .prompts import PromptChunk, check_class_lengths

__all__ = ["DEFAULT_OMDET_MODEL", "OmDetTurboDetector", "allow_any_input_size", "fill_meta_buffers"]

DEFAULT_OMDET_MODEL = "omlab/omdet-turbo-swin-tiny-hf"

SIZE_MULTIPLE = 32
"""The backbone's coarsest stride: ``image_size`` must be a multiple of it (the encoder's FPN concatenates
upsampled maps with finer ones)."""
_TEXT_KEYS = ("classes_input_ids", "classes_attention_mask", "tasks_input_ids", "tasks_attention_mask")


def fill_meta_buffers(model: torch.nn.Module) -> int:
    """Compute the buffers ``from_pretrained`` left on the meta device; how many modules were filled.

    transformers does not save non-persistent buffers and leaves them empty (meta) on loading; timm's Swin
    blocks hold their shifted-window ``attn_mask`` that way and rebuild it with ``_init_buffers()``.

    Raises:
        DetectorLoadError: a tensor is still on the meta device afterwards (the forward would fail).
    """
    filled = 0
    for module in model.modules():
        init_buffers = getattr(module, "_init_buffers", None)  # timm's method; to mypy a Module has tensors
        if any(b.is_meta for b in module.buffers(recurse=False)) and init_buffers is not None:
            init_buffers()
            filled += 1
    left = [name for name, t in chain(model.named_parameters(), model.named_buffers()) if t.is_meta]
    if left:
        raise DetectorLoadError(f"{len(left)} tensors of the {type(model).__name__} were not loaded (meta device), "
                                f"e.g. {', '.join(left[:3])}; the checkpoint does not fit this transformers / timm "
                                "version: re-save it with save_pretrained from the versions in the lock file.")
    return filled


def allow_any_input_size(model: torch.nn.Module) -> None:
    """Let the timm Swin backbone (built for one square size) and the encoder take any input size.

    The patch embedding stops asserting its configured size and every block computes its shifted-window mask
    for the input it gets (at the configured size, the mask it had); the encoder's position embedding is
    computed per input instead of the one precomputed for ``eval_size``.
    """
    for module in model.modules():
        flags: Any = module  # plain attributes, which torch's Module.__setattr__ types as tensors and modules only
        if hasattr(flags, "strict_img_size"):
            flags.strict_img_size = False
        if hasattr(flags, "dynamic_mask"):
            flags.dynamic_mask = True
        if hasattr(flags, "eval_size"):
            flags.eval_size = None


class OmDetTurboDetector(GroundingDetector):
    """transformers' OmDet-Turbo (Swin-T + CLIP text, 640x640): the fastest open-vocabulary detector of the zoo.

    Args:
        model: a hub id (default ``omlab/omdet-turbo-swin-tiny-hf``; fetched by huggingface_hub and cached there,
            or taken from its cache when offline) or a local folder saved with ``save_pretrained`` (model and
            processor).
        image_size: resize to ``image_size x image_size`` instead of the processor's size (640x640); OmDet
            resizes to a square without keeping the aspect ratio, as it was trained.
        max_size: accepted for the common detector arguments and not used: no side is longer than ``image_size``.
        Other arguments: see :class:`GroundingDetector`. ``box_threshold`` is OmDet's score threshold;
        ``text_threshold`` is not used (a class is scored as a whole, not per token).
    """

    max_text_len = CLIP_MAX_TOKENS

    def __init__(self, model: str = DEFAULT_OMDET_MODEL, *, image_size: int | None = None,
                 max_size: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        from transformers import AutoProcessor, OmDetTurboForObjectDetection

        def load(source: str, local_only: bool) -> tuple[Any, Any]:
            return (AutoProcessor.from_pretrained(source, local_files_only=local_only),
                    load_pretrained(OmDetTurboForObjectDetection, source, local_only, self.precision))

        self.processor, self.model = load_from_hub(model, f"load the OmDet-Turbo model {model!r}", load,
                                                   DEFAULT_OMDET_MODEL)
        fill_meta_buffers(self.model)
        self.model.eval().to(self.device)
        speed_up_omdet(self.model)  # exact rewrites, in float32 before any cast
        cast_matmul_weights(self.model, self.precision)  # what autocast would cast on every call, once
        self.name = str(model)
        self._image_kwargs: dict[str, Any] = {"input_data_format": "channels_last"}
        if image_size is not None:
            if image_size % SIZE_MULTIPLE:
                raise ValueError(f"OmDet-Turbo's image_size must be a multiple of {SIZE_MULTIPLE}; got {image_size}")
            self._image_kwargs["size"] = {"height": image_size, "width": image_size}
            allow_any_input_size(self.model)
        self._text_inputs: dict[tuple[str, ...], dict[str, torch.Tensor]] = {}

    @property
    def tokenizer(self) -> Any:
        """The CLIP tokenizer of the processor."""
        return self.processor.tokenizer

    def prompt_chunks(self, names: Sequence[str]) -> list[PromptChunk]:
        """One chunk of all classes (``caption``: the task text the model sees), its text inputs cached.

        Raises:
            ValueError: a class name is longer than CLIP's 77 tokens (start and end tokens included).
        """
        key = (tuple(names), self.max_text_len)
        if key not in self._chunk_cache:
            check_class_lengths(names, self.tokenizer, self.max_text_len)
            # the processor's own text encoding and default task (its image part runs once, on a blank image)
            blank = np.zeros((MIN_SIDE, MIN_SIDE, 3), dtype=np.uint8)
            encoded = self.processor(images=blank, text=list(names), return_tensors="pt")
            text = {k: encoded[k] for k in _TEXT_KEYS}
            task_ids = text["tasks_input_ids"][0][text["tasks_attention_mask"][0] != 0].tolist()
            caption = self.tokenizer.decode(task_ids, skip_special_tokens=True)
            self._text_inputs[tuple(names)] = text
            self._chunk_cache[key] = [PromptChunk(tuple(names), tuple(range(len(names))), caption,
                                                  tuple(task_ids), ())]
        return self._chunk_cache[key]

    def _model_text(self, chunk: PromptChunk, batch: int) -> dict[str, torch.Tensor]:
        """The chunk's text inputs for ``batch`` images (classes repeated per image), on the model's device."""
        text = self._text_inputs[chunk.names]
        inputs = {k: v.repeat(batch, 1).to(self.device) for k, v in text.items()}
        inputs["classes_structure"] = torch.full((batch,), len(chunk.names), dtype=torch.long, device=self.device)
        return inputs

    def _encode_text_once(self, chunk: PromptChunk) -> None:
        """Put the chunk's class and task features in the model's language cache (a no-op when they are there).

        The model looks every image's copy of the classes up before encoding the misses, so without this a
        first batch of B images would encode the prompt B times over.
        """
        inputs = self._model_text(chunk, 1)
        self.model.get_language_embedding(inputs["classes_input_ids"], inputs["classes_attention_mask"],
                                          inputs["tasks_input_ids"], inputs["tasks_attention_mask"],
                                          inputs["classes_structure"])

    def preprocess(self, images: list[np.ndarray]) -> Iterator[tuple[list[int], torch.Tensor]]:
        """``(indices, pixel_values)`` per group of images that the resize brings to one shape (no padding:
        the model has no pixel mask, so padding would change its output)."""
        groups: dict[tuple[int, ...], list[tuple[int, torch.Tensor]]] = {}
        for index, image in enumerate(images):
            pixels = self.processor.image_processor(images=[image], return_tensors="pt",
                                                    **self._image_kwargs)["pixel_values"]
            groups.setdefault(tuple(pixels.shape), []).append((index, pixels))
        for members in groups.values():
            yield [i for i, _ in members], torch.cat([p for _, p in members])

    @staticmethod
    def decode_queries(class_logits: torch.Tensor, boxes: torch.Tensor, height: int, width: int,
                       box_threshold: float) -> RawDetections:
        """One image's ``(Q, C)`` class logits and ``(Q, 4)`` normalized cxcywh boxes -> raw detections.

        As the processor's post-processing: the ``Q`` best (query, class) pairs, then score ``> box_threshold``.
        """
        num_queries, num_classes = class_logits.shape
        scores, pairs = class_logits.float().sigmoid().flatten().topk(num_queries)
        keep = scores > box_threshold
        scores, pairs = scores[keep], pairs[keep]
        cx, cy, w, h = boxes.float()[pairs // num_classes].unbind(-1)
        xyxy = torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)
        xyxy = xyxy * torch.tensor([width, height, width, height], dtype=torch.float32)  # clipped in detect()
        return xyxy, scores, pairs % num_classes

    def predict_batch(self, images: list[np.ndarray], chunks: Sequence[PromptChunk], box_threshold: float,
                      text_threshold: float) -> list[list[RawDetections]]:
        """Per image, one :data:`RawDetections` per chunk; ``text_threshold`` is not used."""
        found: list[list[RawDetections]] = [[] for _ in images]
        for chunk in chunks:
            self._encode_text_once(chunk)
            class_ids = torch.tensor(chunk.class_ids, dtype=torch.long)
            for indices, pixel_values in self.preprocess(images):
                outputs = self.model(pixel_values=pixel_values.to(self.device),
                                     **self._model_text(chunk, len(indices)))
                logits = outputs.decoder_class_logits.float().cpu()
                boxes = outputs.decoder_coord_logits.float().cpu()  # normalized cxcywh, despite the name
                for row, index in enumerate(indices):
                    height, width = images[index].shape[:2]
                    xyxy, scores, labels = self.decode_queries(logits[row], boxes[row], height, width, box_threshold)
                    found[index].append((xyxy, scores, class_ids[labels]))
        return found
