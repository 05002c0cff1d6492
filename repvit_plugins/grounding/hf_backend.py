"""Grounding DINO from transformers (``GroundingDinoForObjectDetection`` + its processor)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..hub import hub_endpoint, hub_offline, looks_like_local_path, reachable, use_hub_offline
from ..mapped_weights import copy_out_of_maps, mapped_files
from ..speed import cast_matmul_weights
from .deformable_attention import use_fast_deformable_attention
from .detector import DetectorLoadError, GroundingDetector, load_error
from .prompts import PromptChunk

__all__ = ["DEFAULT_HF_MODEL", "HFGroundingDetector"]

DEFAULT_HF_MODEL = "IDEA-Research/grounding-dino-tiny"

# transformers' GroundingDino hard-codes bert-base-uncased ids of [CLS], [SEP], '.' and '?'
_SPECIAL_TOKENS = {"[CLS]": 101, "[SEP]": 102, ".": 1012, "?": 1029}


def _download_hint(model: str) -> str:
    hub_id = model if not Path(model).expanduser().is_absolute() and model.count("/") == 1 else DEFAULT_HF_MODEL
    return (
        "On a machine with internet access run\n"
        f"  huggingface-cli download {hub_id} --local-dir DIR\n"
        "copy DIR here and pass it as the model: build_detector('hf', model=DIR), "
        "or on the command line --detector-model DIR."
    )


def _resolve(model: str) -> str:
    """A local directory as a string, or the hub id unchanged; a missing local path is an error."""
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise DetectorLoadError(f"{model} is a file; the 'hf' backend needs a model folder "
                                    "(config.json, weights, tokenizer and preprocessor files) or a hub id.")
        return str(path)
    if looks_like_local_path(model):
        raise DetectorLoadError(f"no model folder at {model}.\n{_download_hint(model)}")
    return model


def _prepare_hub(source: str) -> bool:
    """Whether to read ``source`` from the local cache only: a folder, or a hub that is offline or unreachable."""
    if Path(source).is_dir() or hub_offline():
        return True
    if not reachable(hub_endpoint()):
        use_hub_offline()  # fail in seconds with the download hint, not after minutes of retries
        return True
    return False


class HFGroundingDetector(GroundingDetector):
    """transformers' Grounding DINO.

    Args:
        model: a hub id (default ``IDEA-Research/grounding-dino-tiny``; fetched by huggingface_hub and
            cached there, or taken from its cache when offline) or a local folder saved with
            ``save_pretrained`` (model and processor).
        image_size / max_size: override the processor's resize (shortest / longest edge).
        fast_attention: run multi-scale deformable attention as one weighted gather
            (:mod:`~repvit_plugins.grounding.deformable_attention`) instead of transformers' ``grid_sample``
            path, and the image-text fusion attention with its image-side projections folded onto the text
            side (:mod:`~repvit_plugins.grounding.fusion_attention`): the same outputs to float32 rounding,
            faster and lighter. Default: on the CPU (where it was measured), not on CUDA.
        Other arguments: see :class:`GroundingDetector`.
    """

    def __init__(self, model: str = DEFAULT_HF_MODEL, *, image_size: int | None = None, max_size: int | None = None,
                 fast_attention: bool | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        from transformers import AutoProcessor, GroundingDinoForObjectDetection

        source = _resolve(str(model))
        local_only = _prepare_hub(source)
        maps_before = mapped_files()
        try:
            self.processor = AutoProcessor.from_pretrained(source, local_files_only=local_only)
            self.model = GroundingDinoForObjectDetection.from_pretrained(source, local_files_only=local_only)
        except (OSError, ValueError) as err:
            raise load_error(f"load the Grounding DINO model {model!r}", err, _download_hint(str(model))) from err
        self.model.eval().to(self.device)
        if fast_attention or (fast_attention is None and self.device.type == "cpu"):
            from .fusion_attention import use_folded_fusion_attention  # imports transformers' modeling code

            use_fast_deformable_attention(self.model)
            use_folded_fusion_attention(self.model)
        if cast_matmul_weights(self.model, self.precision):  # what autocast would cast on every call, once
            copy_out_of_maps(mapped_files() - maps_before)  # the float32 file is not needed any more
        self.name = str(model)
        self.max_text_len = int(self.model.config.max_text_len)
        ids = dict(zip(_SPECIAL_TOKENS, self.tokenizer.convert_tokens_to_ids(list(_SPECIAL_TOKENS))))
        if ids != _SPECIAL_TOKENS:
            raise DetectorLoadError(f"{model}: the tokenizer's ids of [CLS], [SEP], '.', '?' are {ids}; "
                                    f"transformers' Grounding DINO needs {_SPECIAL_TOKENS} "
                                    "(a bert-base-uncased vocabulary).")
        self._image_kwargs: dict[str, Any] = {}
        if image_size is not None or max_size is not None:
            size = dict(self.processor.image_processor.size)
            size.update({k: v for k, v in (("shortest_edge", image_size), ("longest_edge", max_size)) if v})
            self._image_kwargs["size"] = size

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    def preprocess(self, images: list[np.ndarray]) -> dict[str, torch.Tensor]:
        """Resized, normalized and padded ``pixel_values`` and ``pixel_mask`` for a batch."""
        encoded = self.processor.image_processor(images=list(images), return_tensors="pt",
                                                 input_data_format="channels_last", **self._image_kwargs)
        return {"pixel_values": encoded["pixel_values"], "pixel_mask": encoded["pixel_mask"]}

    def forward(self, images: list[np.ndarray], chunk: PromptChunk) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = self.preprocess(images)
        input_ids = torch.tensor([chunk.input_ids] * len(images), dtype=torch.long)
        outputs = self.model(
            pixel_values=inputs["pixel_values"].to(self.device),
            pixel_mask=inputs["pixel_mask"].to(self.device),
            input_ids=input_ids.to(self.device),
            token_type_ids=torch.zeros_like(input_ids).to(self.device),
            attention_mask=torch.ones_like(input_ids).to(self.device),
        )
        return outputs.logits, outputs.pred_boxes
