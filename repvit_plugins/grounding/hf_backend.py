"""Grounding DINO and MM-Grounding-DINO / LLMDet from transformers (``*ForObjectDetection`` + their processor).

The family comes from the folder's (or hub model's) ``config.json`` ``model_type``: see :data:`MODEL_CLASSES`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np
import torch

from ..runtime.fused_activation import fuse_activations
from ..runtime.mapped_weights import read_safetensors
from ..runtime.speed import cast_matmul_weights
from ..weights.hub import hub_endpoint, hub_offline, looks_like_local_path, reachable, use_hub_offline
from .deformable_attention import use_fast_deformable_attention
from .detector import DetectorLoadError, GroundingDetector, load_error
from .prompts import PromptChunk
from .text_cache import use_text_feature_cache

__all__ = ["DEFAULT_HF_MODEL", "MODEL_CLASSES", "HFGroundingDetector", "load_from_hub", "load_pretrained",
           "model_type_of"]

T = TypeVar("T")

DEFAULT_HF_MODEL = "IDEA-Research/grounding-dino-tiny"

MODEL_CLASSES = {"grounding-dino": "GroundingDinoForObjectDetection",
                 "mm-grounding-dino": "MMGroundingDinoForObjectDetection"}
"""``config.json`` ``model_type`` -> the transformers class :class:`HFGroundingDetector` loads (LLMDet checkpoints
are ``mm-grounding-dino``). Both hard-code the special token ids below and pad logits to ``max_text_len``."""

# transformers' GroundingDino and MMGroundingDino hard-code bert-base-uncased ids of [CLS], [SEP], '.' and '?'
_SPECIAL_TOKENS = {"[CLS]": 101, "[SEP]": 102, ".": 1012, "?": 1029}


def _download_hint(model: str, default: str = DEFAULT_HF_MODEL) -> str:
    """What to fetch for ``model``: its hub id, or ``default``'s when ``model`` is a local path."""
    hub_id = model if not Path(model).expanduser().is_absolute() and model.count("/") == 1 else default
    return (
        "On a machine with internet access run\n"
        f"  huggingface-cli download {hub_id} --local-dir DIR\n"
        "copy DIR here and pass it as the model: build_detector('hf', model=DIR), "
        "or on the command line --detector-model DIR."
    )


def _resolve(model: str, default: str = DEFAULT_HF_MODEL) -> str:
    """A local directory as a string, or the hub id unchanged; a missing local path is an error
    (its hint names ``default``'s hub id)."""
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise DetectorLoadError(f"{model} is a file; the 'hf' backend needs a model folder "
                                    "(config.json, weights, tokenizer and preprocessor files) or a hub id.")
        return str(path)
    if looks_like_local_path(model):
        raise DetectorLoadError(f"no model folder at {model}.\n{_download_hint(model, default)}")
    return model


def _prepare_hub(source: str) -> bool:
    """Whether to read ``source`` from the local cache only: a folder, or a hub that is offline or unreachable."""
    if Path(source).is_dir() or hub_offline():
        return True
    if not reachable(hub_endpoint()):
        use_hub_offline()  # fail in seconds with the download hint, not after minutes of retries
        return True
    return False


def load_from_hub(model: str, what: str, load: Callable[[str, bool], T], default: str = DEFAULT_HF_MODEL) -> T:
    """``load(source, local_only)`` for a hub id or local folder ``model``: offline-aware (a folder, or a hub that
    is offline or unreachable, is read from disk only); a failure becomes a :class:`DetectorLoadError` "could not
    <what>" with the download hint (naming ``default``'s hub id for a local path)."""
    source = _resolve(str(model), default)
    local_only = _prepare_hub(source)
    try:
        return load(source, local_only)
    except (OSError, ValueError) as err:
        raise load_error(what, err, _download_hint(str(model), default)) from err


def _safetensors_files(source: str, local_only: bool) -> list[str]:
    """The local paths of the ``.safetensors`` weight files of a folder or hub id (its shards in order);
    ``[]`` when it has none (e.g. only ``pytorch_model.bin``) or a shard is missing (transformers then says which)."""
    from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, cached_file

    def cached(name: str) -> str | None:
        return cached_file(source, name, local_files_only=local_only, _raise_exceptions_for_missing_entries=False)

    single = cached(SAFE_WEIGHTS_NAME)
    if single:
        return [single]
    index = cached(SAFE_WEIGHTS_INDEX_NAME)
    if not index:
        return []
    shards = dict.fromkeys(json.loads(Path(index).read_text(encoding="utf-8"))["weight_map"].values())
    paths = [cached(shard) for shard in shards]
    return [path for path in paths if path] if all(paths) else []


def load_pretrained(model_class: Any, source: str, local_only: bool, precision: str) -> Any:
    """``model_class.from_pretrained(source)``; for a ``precision`` other than ``'fp32'`` its weights are read into
    process memory (:func:`~repvit_plugins.runtime.mapped_weights.read_safetensors`) rather than memory-mapped, so
    that casting them with :func:`~repvit_plugins.runtime.speed.cast_matmul_weights` frees the float32 copies."""
    files = [] if precision == "fp32" else _safetensors_files(source, local_only)
    if not files:
        return model_class.from_pretrained(source, local_files_only=local_only)
    config = model_class.config_class.from_pretrained(source, local_files_only=local_only)
    state_dict: dict[str, torch.Tensor] = {}
    for file in files:
        state_dict.update(read_safetensors(file))
    return model_class.from_pretrained(None, config=config, state_dict=state_dict)


def _config_dict(source: str, local_only: bool) -> dict[str, Any]:
    """The raw ``config.json`` of a folder or hub id (no guessing of the type from the name, as AutoConfig does)."""
    from transformers import PretrainedConfig

    config, _ = PretrainedConfig.get_config_dict(source, local_files_only=local_only)
    if not config:  # transformers answers a folder without config.json with {}
        raise OSError(f"{source} holds no config.json")
    return config


def model_type_of(model: str) -> str:
    """The ``model_type`` in the ``config.json`` of a local folder or hub id (hub: read from its cache when offline);
    ``''`` when the config has none.

    Raises:
        DetectorLoadError: no such folder, or the config cannot be read (offline and not cached); says what to do.
    """
    config = load_from_hub(model, f"read the config of {model!r}", _config_dict)
    return str(config.get("model_type", ""))


def _model_class(model_type: str, model: str) -> type:
    """The transformers detection class of ``model_type`` (:data:`MODEL_CLASSES`)."""
    import transformers

    name = MODEL_CLASSES.get(model_type)
    if name is None:
        raise DetectorLoadError(f"{model} is a {model_type!r} model; HFGroundingDetector loads "
                                f"{' and '.join(map(repr, MODEL_CLASSES))} (config.json model_type). Build other "
                                "transformers detectors with build_detector('hf', model=...), which picks their class.")
    return getattr(transformers, name)


class HFGroundingDetector(GroundingDetector):
    """transformers' Grounding DINO or MM-Grounding-DINO / LLMDet (chosen by the config's ``model_type``).

    Args:
        model: a hub id (default ``IDEA-Research/grounding-dino-tiny``; fetched by huggingface_hub and
            cached there, or taken from its cache when offline) or a local folder saved with
            ``save_pretrained`` (model and processor).
        image_size / max_size: override the processor's resize (shortest / longest edge).
        fast_attention: run multi-scale deformable attention as one weighted gather
            (:mod:`~repvit_plugins.grounding.deformable_attention`) instead of transformers' ``grid_sample``
            path, and the image-text fusion attention with its image-side projections folded onto the text
            side (:mod:`~repvit_plugins.grounding.fusion_attention`), and each Linear + activation as one
            oneDNN kernel (:mod:`~repvit_plugins.runtime.fused_activation`): the same outputs to float32
            rounding, faster and lighter. Default: on the CPU (where it was measured), not on CUDA.
        cache_text: run the BERT text encoder once per prompt (and batch size), not once per call
            (:mod:`~repvit_plugins.grounding.text_cache`); outputs unchanged.
        Other arguments: see :class:`GroundingDetector`.
    """

    def __init__(self, model: str = DEFAULT_HF_MODEL, *, image_size: int | None = None, max_size: int | None = None,
                 fast_attention: bool | None = None, cache_text: bool = True, **kwargs: Any):
        super().__init__(**kwargs)
        from transformers import AutoProcessor

        def load(source: str, local_only: bool) -> tuple[Any, Any]:
            model_class = _model_class(str(_config_dict(source, local_only).get("model_type", "")), str(model))
            return (AutoProcessor.from_pretrained(source, local_files_only=local_only),
                    load_pretrained(model_class, source, local_only, self.precision))

        self.processor, self.model = load_from_hub(model, f"load the Grounding DINO model {model!r}", load)
        self.model_type = str(self.model.config.model_type)
        self.model.eval().to(self.device)
        if cache_text:
            use_text_feature_cache(self.model.model.text_backbone)
        if fast_attention or (fast_attention is None and self.device.type == "cpu"):
            from .fusion_attention import use_folded_fusion_attention  # imports transformers' modeling code

            use_fast_deformable_attention(self.model)
            use_folded_fusion_attention(self.model)
            fuse_activations(self.model)  # Swin's MLPs and the feed-forward layers: one oneDNN kernel each
        cast_matmul_weights(self.model, self.precision)  # what autocast would cast on every call, once
        self.name = str(model)
        self.max_text_len = int(self.model.config.max_text_len)
        ids = dict(zip(_SPECIAL_TOKENS, self.tokenizer.convert_tokens_to_ids(list(_SPECIAL_TOKENS))))
        if ids != _SPECIAL_TOKENS:
            raise DetectorLoadError(f"{model}: the tokenizer's ids of [CLS], [SEP], '.', '?' are {ids}; "
                                    f"transformers' {type(self.model).__name__} needs {_SPECIAL_TOKENS} "
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
