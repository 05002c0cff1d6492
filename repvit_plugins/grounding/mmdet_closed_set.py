"""A trained closed-set mmdet detector (e.g. the RepViT Mask R-CNN that ``autolabel`` trains) behind the detector API.

The prompt does not steer the model: its classes are matched to the model's own
(``dataset_meta['classes']``; case and a leading article are ignored, so
``"a dog."`` finds ``dog``), boxes of other classes are dropped, and a prompt
class the model does not know is an error that lists the classes it does.
NMS, ``max_detections`` and ``box_threshold`` are shared; ``text_threshold`` is not used.
An instance-segmentation model (Mask R-CNN) also returns its own masks, which the
pipeline uses instead of SAM's with ``masks='detector'``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..zoo import resolve_checkpoint
from .detector import DetectorLoadError, GroundingDetector, RawDetections
from .prompts import PromptChunk

__all__ = ["MMDetClosedSetDetector", "is_closed_set_config", "match_classes", "predicts_masks"]

_ARTICLE = re.compile(r"^(a|an|the)\s+", re.IGNORECASE)


def _key(name: str) -> str:
    return _ARTICLE.sub("", name.strip()).lower()


def is_closed_set_config(config: str | Path | None) -> bool:
    """Whether ``config`` is an mmdet config of a model other than Grounding DINO (False if it is not a file)."""
    if config is None or not Path(config).expanduser().is_file():
        return False
    from mmengine.config import Config

    return Config.fromfile(str(Path(config).expanduser())).model.get("type") != "GroundingDINO"


def match_classes(prompt_classes: Sequence[str], model_classes: Sequence[str]) -> dict[int, int]:
    """``{model class index: prompt class index}`` for every prompt class.

    Raises:
        ValueError: a prompt class that is none of the model's.
    """
    index = {_key(name): i for i, name in enumerate(model_classes)}
    unknown = [name for name in prompt_classes if _key(name) not in index]
    if unknown:
        raise ValueError(f"the detector knows {', '.join(model_classes)}; not {', '.join(unknown)}")
    return {index[_key(name)]: i for i, name in enumerate(prompt_classes)}


def predicts_masks(model: torch.nn.Module) -> bool:
    """Whether an mmdet detector predicts instance masks (a two-stage model's mask head, or a single-stage one's)."""
    roi_head = getattr(model, "roi_head", None)
    return bool(getattr(roi_head, "with_mask", False)) or getattr(model, "mask_head", None) is not None


class MMDetClosedSetDetector(GroundingDetector):
    """A trained mmdet detector (any ``model.type`` but GroundingDINO) with its checkpoint.

    Args:
        config: the config it was trained with.
        checkpoint: its weights (path or zoo name; read with ``weights_only=True``).
        fuse: re-parameterize a RepViT backbone (same boxes, faster).
        Other arguments: see :class:`GroundingDetector`.
    """

    def __init__(self, config: str | Path, checkpoint: str | Path | None, *, fuse: bool = True, **kwargs: Any):
        super().__init__(**kwargs)
        from ..mm.inference import load_model

        if checkpoint is None:
            raise DetectorLoadError(f"{config} is a closed-set detector: pass its trained weights with "
                                    "--detector-checkpoint (tools/train.py writes them into its work dir)")
        weights = resolve_checkpoint(checkpoint)
        self.model = load_model(config, weights, device=str(self.device), fuse=fuse)
        self.classes = list(self.model.dataset_meta["classes"])
        self.predicts_masks = predicts_masks(self.model)
        self.name = str(weights)

    @property
    def tokenizer(self) -> Any:
        return None  # closed set: no text encoder

    def prompt_chunks(self, names: Sequence[str]) -> list[PromptChunk]:
        """One chunk of all classes (nothing to tokenize)."""
        match_classes(names, self.classes)  # unknown classes fail here, before any image
        return [PromptChunk(tuple(names), tuple(range(len(names))), "", (), ())]

    def predict_batch(self, images: list[np.ndarray], chunks: Sequence[PromptChunk], box_threshold: float,
                      text_threshold: float) -> list[list[RawDetections]]:
        from mmdet.apis import inference_detector

        mapping = match_classes(chunks[0].names, self.classes)
        lookup = torch.tensor([mapping.get(i, -1) for i in range(len(self.classes))], dtype=torch.long)
        with torch.autocast(self.device.type, enabled=False):  # mmcv's RoIAlign has no bf16 / fp16 CPU kernel
            outputs = inference_detector(self.model, [np.ascontiguousarray(image[..., ::-1]) for image in images])
        found = []
        for output in outputs:
            pred = output.pred_instances
            labels = lookup[pred.labels.cpu()]
            keep = (pred.scores.cpu() > box_threshold) & (labels >= 0)
            raw = (pred.bboxes.cpu()[keep].float(), pred.scores.cpu()[keep].float(), labels[keep])
            masks = pred.get("masks")
            found.append([raw if masks is None else (*raw, masks.cpu()[keep].bool())])
        return found
