"""A trained closed-set mmdet detector (e.g. the RepViT Mask R-CNN that ``autolabel`` trains) behind the detector API.

The prompt does not steer the model: its classes are matched to the model's own
(``dataset_meta['classes']``; case and a leading article are ignored, so
``"a dog."`` finds ``dog``), boxes of other classes are dropped, and a prompt
class the model does not know is an error that lists the classes it does.
NMS, ``max_detections`` and ``box_threshold`` are shared; ``text_threshold`` is not used.
An instance-segmentation model (RTMDet-Ins, Mask R-CNN) also returns its own masks, which the
pipeline uses instead of SAM's with ``masks='detector'``.

Inference is mmdet's ``inference_detector`` with its fixed costs taken out: the test pipeline is
built once (without annotation loading), a single-stage model pads to a multiple of 32 instead of
a square, and its mask head upsamples only the instances above ``box_threshold``. Under bf16 /
fp16 autocast a single-stage model runs its backbone, neck and head in low precision and its
post-processing (mmcv's NMS, mask upsampling) in float32; a two-stage model runs in float32
throughout (mmcv's RoIAlign has no low-precision CPU kernel).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..weights.zoo import resolve_checkpoint
from .detector import DetectorLoadError, GroundingDetector, RawDetections
from .prompts import PromptChunk, strip_article

__all__ = ["ClosedSetDetector", "MMDetClosedSetDetector", "inference_pipeline", "is_closed_set_config",
           "is_single_stage", "match_classes", "predicts_masks"]

def _key(name: str) -> str:
    return strip_article(name).lower()


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
        raise ValueError(f"the prompt asks for {', '.join(prompt_classes)}, but the detector knows "
                         f"{', '.join(model_classes)}; not {', '.join(unknown)}. Prompt with the detector's classes "
                         "(or a subset), or pass the detector trained on yours")
    return {index[_key(name)]: i for i, name in enumerate(prompt_classes)}


def is_single_stage(model: torch.nn.Module) -> bool:
    """Whether an mmdet detector predicts as mmdet's ``SingleStageDetector`` does: ``bbox_head`` on the neck's
    features, all post-processing in ``bbox_head.predict_by_feat`` (RTMDet, RTMDet-Ins, YOLOX, ...)."""
    from mmdet.models.detectors import SingleStageDetector

    return isinstance(model, SingleStageDetector) and type(model).predict is SingleStageDetector.predict


def inference_pipeline(cfg: Any, *, single_stage: bool) -> Any:
    """The config's test pipeline for RGB->BGR arrays, built once: no annotation loading, and for a
    single-stage model a pad to a multiple of 32 instead of the square one (less to compute on a 4:3 photo).
    """
    from mmcv.transforms import Compose
    from mmdet.utils import get_test_pipeline_cfg

    steps = []
    for step in copy.deepcopy(get_test_pipeline_cfg(cfg)):
        kind = str(step["type"]).split(".")[-1]
        if kind == "LoadImageFromFile":
            step = dict(type="mmdet.LoadImageFromNDArray")
        elif kind == "LoadAnnotations":
            continue
        elif kind == "Pad" and single_stage and "size" in step:
            step = dict(step, size=None, size_divisor=32)
        steps.append(step)
    return Compose(steps)


def predicts_masks(model: torch.nn.Module) -> bool:
    """Whether an mmdet detector predicts instance masks: a two-stage model's mask head, a single-stage
    instance segmentor's (SOLO, CondInst) or one inside the box head (RTMDet-Ins)."""
    roi_head = getattr(model, "roi_head", None)
    return (bool(getattr(roi_head, "with_mask", False)) or getattr(model, "mask_head", None) is not None
            or getattr(getattr(model, "bbox_head", None), "mask_head", None) is not None)


class ClosedSetDetector(GroundingDetector):
    """A detector of its own fixed :attr:`classes` (no text encoder): the prompt picks some of them.

    A subclass sets :attr:`classes` and implements :meth:`predict_batch` for the one chunk of all prompt classes.
    """

    classes: list[str]
    """The model's class names (a prompt class is matched to them by :func:`match_classes`)."""

    @property
    def tokenizer(self) -> Any:
        return None  # closed set: no text encoder

    def prompt_chunks(self, names: Sequence[str]) -> list[PromptChunk]:
        """One chunk of all classes (nothing to tokenize)."""
        match_classes(names, self.classes)  # unknown classes fail here, before any image
        return [PromptChunk(tuple(names), tuple(range(len(names))), "", (), ())]


class MMDetClosedSetDetector(ClosedSetDetector):
    """A trained mmdet detector (any ``model.type`` but GroundingDINO) with its checkpoint.

    Args:
        config: the config it was trained with.
        checkpoint: its weights (path or zoo name; read with ``weights_only=True``; every key must fit the
            config's model, else a :class:`~repvit_plugins.weights.checkpoint_io.CheckpointError` names them).
        fuse: re-parameterize a RepViT backbone with its own ``fuse()`` (same boxes, faster).
        channels_last: store a single-stage model in channels-last memory format (faster convolutions on CPU;
            two-stage models stay as they are: mmcv's RoIAlign reads NCHW memory).
        Other arguments: see :class:`GroundingDetector`.
    """

    def __init__(self, config: str | Path, checkpoint: str | Path | None, *, fuse: bool = True,
                 channels_last: bool = True, **kwargs: Any):
        super().__init__(**kwargs)
        from ..mm.inference import load_model

        if checkpoint is None:
            raise DetectorLoadError(f"{config} is a closed-set detector: pass its trained weights with "
                                    "--detector-checkpoint (tools/train.py writes them into its work dir)")
        weights = resolve_checkpoint(checkpoint)
        self.model = load_model(config, weights, device=str(self.device), fuse=fuse)
        self.single_stage = is_single_stage(self.model)
        if channels_last and self.single_stage:
            self.model.to(memory_format=torch.channels_last)
        self.classes = list(self.model.dataset_meta["classes"])
        self.predicts_masks = predicts_masks(self.model)
        self.pipeline = inference_pipeline(self.model.cfg, single_stage=self.single_stage)
        self.name = str(weights)

    def instances(self, images: list[np.ndarray], box_threshold: float = 0.0) -> list[Any]:
        """mmdet's ``pred_instances`` (boxes, scores, labels, masks in pixels of each RGB image) of a batch.

        Single-stage models skip the instances at or below ``box_threshold`` before their masks are decoded.
        """
        from mmengine.dataset import pseudo_collate

        data = pseudo_collate([self.pipeline(dict(img=np.ascontiguousarray(image[..., ::-1]), img_id=i))
                               for i, image in enumerate(images)])
        full = torch.autocast(self.device.type, enabled=False)  # mmcv's NMS / RoIAlign: float32 only on CPU
        with full:
            data = self.model.data_preprocessor(data, False)
        samples = data["data_samples"]
        if not self.single_stage:
            with full:
                return [s.pred_instances for s in self.model.predict(data["inputs"], samples)]
        head = self.model.bbox_head
        outputs = head(self.model.extract_feat(data["inputs"]))  # under the caller's autocast, if any
        outputs = [[t.float() for t in o] if isinstance(o, (list, tuple)) else o.float() for o in outputs]
        cfg = copy.deepcopy(head.test_cfg)
        cfg.score_thr = max(float(cfg.get("score_thr", 0.0)), box_threshold)
        with full:
            return head.predict_by_feat(*outputs, batch_img_metas=[s.metainfo for s in samples], cfg=cfg,
                                        rescale=True)

    def predict_batch(self, images: list[np.ndarray], chunks: Sequence[PromptChunk], box_threshold: float,
                      text_threshold: float) -> list[list[RawDetections]]:
        mapping = match_classes(chunks[0].names, self.classes)
        lookup = torch.tensor([mapping.get(i, -1) for i in range(len(self.classes))], dtype=torch.long)
        found: list[list[RawDetections]] = []
        for pred in self.instances(images, box_threshold):
            labels = lookup[pred.labels.cpu()]
            keep = (pred.scores.cpu() > box_threshold) & (labels >= 0)
            raw = (pred.bboxes.cpu()[keep].float(), pred.scores.cpu()[keep].float(), labels[keep])
            masks = pred.get("masks")
            found.append([raw if masks is None else (*raw, masks.cpu()[keep].bool())])
        return found
