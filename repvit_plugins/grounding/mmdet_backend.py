"""Grounding DINO from mmdet 3.x (``type='GroundingDINO'``), built from a config for config-driven experiments.

mmdet decodes its own outputs (a class's score is the mean probability of its
tokens, top-k over query x class pairs, ``test_cfg.max_per_img``), so
``text_threshold`` is not used here; the prompt is still split into chunks of
whole classes that fit the text encoder, and NMS / ``max_detections`` are shared.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from ..runtime.quiet import quietly
from ..weights.checkpoint_io import extract_state_dict, load_checkpoint_file, strict_load
from ..weights.zoo import resolve_checkpoint
from .detector import DetectorLoadError, GroundingDetector, RawDetections, load_error
from .prompts import PromptChunk, class_text

if TYPE_CHECKING:  # mmdet ships no types: mypy sees its classes as Any
    from mmdet.models.detectors import BaseDetector

__all__ = ["MMDetGroundingDetector"]

_BERT_HINT = (
    "mmdet's Grounding DINO needs its BERT in a local folder. On a machine with internet access run\n"
    "  huggingface-cli download bert-base-uncased config.json vocab.txt tokenizer_config.json "
    "model.safetensors --local-dir DIR\n"
    "copy DIR here and pass it: build_detector('mmdet', text_encoder=DIR), or --text-encoder DIR."
)


def _load_config(config: str | Path, text_encoder: str | Path | None, image_size: int | None,
                 max_size: int | None) -> Any:
    from mmengine.config import Config

    path = Path(config).expanduser()
    if not path.is_file():
        raise DetectorLoadError(f"no mmdet config at {path}; pass an mmdet GroundingDINO config file")
    cfg = Config.fromfile(str(path))
    if cfg.model.get("type") != "GroundingDINO":
        raise DetectorLoadError(f"{path} builds a {cfg.model.get('type')!r}, not a 'GroundingDINO'")
    if text_encoder is not None:
        encoder = Path(text_encoder).expanduser()
        if not (encoder / "config.json").is_file():
            raise DetectorLoadError(f"no BERT folder at {encoder} (config.json missing).\n{_BERT_HINT}")
        cfg.model.language_model.name = str(encoder.resolve())
    pipeline = [dict(t) for t in cfg.test_dataloader.dataset.pipeline if "Annotations" not in t["type"]]
    pipeline[0] = dict(type="mmdet.LoadImageFromNDArray")
    for step in pipeline:
        if "scale" in step and (image_size or max_size):
            short, long = min(step["scale"]), max(step["scale"])
            step["scale"] = (image_size or short, max_size or long)
    return cfg, pipeline


class MMDetGroundingDetector(GroundingDetector):
    """mmdet 3.x Grounding DINO.

    Args:
        config: an mmdet config whose ``model.type`` is ``'GroundingDINO'``.
        checkpoint: weights (path or zoo name; read with ``weights_only=True``); ``None`` keeps random weights.
        text_encoder: local BERT folder; replaces ``model.language_model.name``.
        image_size / max_size: override the test pipeline's resize (shortest / longest edge).
        Other arguments: see :class:`GroundingDetector`.
    """

    def __init__(self, config: str | Path, checkpoint: str | Path | None = None,
                 text_encoder: str | Path | None = None, *, image_size: int | None = None,
                 max_size: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        from mmengine.dataset import Compose
        from mmengine.registry import init_default_scope

        from ..mm.checkpoint_safety import register_safe_globals

        cfg, pipeline = _load_config(config, text_encoder, image_size, max_size)
        weights = resolve_checkpoint(checkpoint) if checkpoint else None
        init_default_scope(cfg.get("default_scope", "mmdet"))
        self.model = self._build(cfg)
        if weights is not None:
            register_safe_globals()  # mmengine checkpoints hold a few numpy / HistoryBuffer objects
            strict_load(self.model, extract_state_dict(load_checkpoint_file(weights)),
                        ignore=r"language_model\.language_backbone\.body\.model\.embeddings\.position_ids$",
                        what=str(weights))
        else:  # random weights, initialised: some parameters are allocated uninitialised until init_weights()
            with quietly():
                self.model.init_weights()
        self.model.cfg = cfg
        self.model.eval().to(self.device)
        self.pipeline = Compose(pipeline)
        self.max_text_len = int(self.model.language_model.max_tokens)
        self.name = str(weights or config)

    @staticmethod
    def _build(cfg: Any) -> BaseDetector:
        from mmdet.registry import MODELS

        try:
            with quietly():
                return MODELS.build(cfg.model)
        except (OSError, ValueError) as err:
            raise load_error(f"build the mmdet Grounding DINO (text encoder {cfg.model.language_model.name!r})", err,
                             _BERT_HINT) from err

    @property
    def tokenizer(self) -> Any:
        return self.model.language_model.tokenizer

    def predict_batch(self, images: list[np.ndarray], chunks: Sequence[PromptChunk], box_threshold: float,
                      text_threshold: float) -> list[list[RawDetections]]:
        from mmengine.dataset import pseudo_collate

        found: list[list[RawDetections]] = [[] for _ in images]
        for chunk in chunks:
            text = tuple(class_text(name) for name in chunk.names)
            samples = [self.pipeline(dict(img=np.ascontiguousarray(image[..., ::-1]), img_id=i, text=text,
                                          custom_entities=True)) for i, image in enumerate(images)]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                outputs = self.model.test_step(pseudo_collate(samples))
            for i, output in enumerate(outputs):
                pred = output.pred_instances
                keep = pred.scores > box_threshold
                xyxy = pred.bboxes[keep].float().cpu()  # clipped in detect()
                class_ids = torch.tensor(chunk.class_ids, dtype=torch.long)[pred.labels[keep].cpu()]
                found[i].append((xyxy, pred.scores[keep].float().cpu(), class_ids))
        return found
