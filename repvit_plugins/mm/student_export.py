"""ONNX export of a trained RTMDet-Ins student (mmdet): fused backbone + neck + head, raw head outputs out.

Graph: ``image`` (``1 x 3 x S x S`` float32 RGB pixels 0..255, letterboxed by
:func:`repvit_plugins.grounding.rtmdet_ins.letterbox`; channel order and the
model's normalization are applied inside) -> class scores, box distances and
mask kernels per level, then the shared mask features
(:func:`~repvit_plugins.grounding.rtmdet_ins.output_names`). Post-processing
stays outside (:func:`~repvit_plugins.grounding.rtmdet_ins.decode_instances`);
the :class:`~repvit_plugins.grounding.rtmdet_ins.StudentSpec` it needs is
written into the file's metadata, so the ``.onnx`` file alone runs, without
mmdet or the config.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
from torch import nn

from ..grounding.rtmdet_ins import METADATA_KEY, Instances, StudentSpec, letterbox, output_names
from ..models.repvit import reparameterize

if TYPE_CHECKING:  # mmdet ships no types: mypy sees its classes as Any (their attributes are dynamic)
    from mmdet.models.dense_heads import RTMDetInsHead
    from mmdet.models.detectors import BaseDetector

__all__ = ["StudentGraph", "agreement", "export_student", "load_student", "quantize_student_int8", "student_spec",
           "torch_instances"]


def _require_rtmdet_ins(model: BaseDetector) -> RTMDetInsHead:
    head = getattr(model, "bbox_head", None)
    if head is None or not hasattr(head, "dyconv_channels") or not hasattr(head, "prior_generator"):
        raise ValueError(f"{type(model).__name__} with {type(head).__name__} is not an RTMDet-Ins model (its "
                         "bbox_head needs dynamic mask kernels); export an rtmdet-ins config's model")
    return head


def _pipeline_step(cfg: Any, kind: str) -> dict | None:
    pipeline = cfg.get("test_pipeline") or cfg.test_dataloader.dataset.pipeline
    return next((step for step in pipeline if str(step.get("type", "")).split(".")[-1] == kind), None)


def _test_input_size(cfg: Any) -> int:
    """The side of the config's test ``Resize(scale=(S, S))``."""
    resize = _pipeline_step(cfg, "Resize")
    scale = None if resize is None else resize.get("scale")
    if scale is None or len(set(np.atleast_1d(scale).tolist())) != 1:
        raise ValueError(f"cannot read a square test input size from the config's test pipeline (Resize scale "
                         f"{scale}); pass input_size=")
    return int(np.atleast_1d(scale)[0])


def student_spec(model: BaseDetector, input_size: int | None = None) -> StudentSpec:
    """The :class:`StudentSpec` of an mmdet RTMDet-Ins model built by ``init_detector`` (it carries ``cfg``)."""
    head = _require_rtmdet_ins(model)
    classes = (getattr(model, "dataset_meta", None) or {}).get("classes")
    if not classes:
        raise ValueError("the model has no dataset_meta['classes']; load it with its checkpoint "
                         "(repvit_plugins.mm.inference.load_model) or set model.dataset_meta")
    cfg = getattr(model, "cfg", None)
    size = input_size or (_test_input_size(cfg) if cfg is not None else None)
    if size is None:
        raise ValueError("the model carries no config: pass input_size=")
    pad = _pipeline_step(cfg, "Pad") if cfg is not None else None
    pad_value = (pad or {}).get("pad_val", {}).get("img", 114)
    test_cfg = head.test_cfg
    preprocessor = model.data_preprocessor
    return StudentSpec(
        classes=tuple(classes), input_size=int(size),
        strides=tuple(int(s[0]) for s in head.prior_generator.strides),
        num_prototypes=int(head.num_prototypes), dyconv_channels=int(head.dyconv_channels),
        num_dyconvs=int(head.num_dyconvs), pad_value=float(np.atleast_1d(pad_value)[0]),
        mean=tuple(preprocessor.mean.flatten().tolist()), std=tuple(preprocessor.std.flatten().tolist()),
        score_thr=float(test_cfg.get("score_thr", 0.05)), nms_pre=int(test_cfg.get("nms_pre", 1000)),
        nms_iou=float(test_cfg.nms.iou_threshold), max_per_img=int(test_cfg.get("max_per_img", 100)),
        mask_thr_binary=float(test_cfg.get("mask_thr_binary", 0.5)),
        min_bbox_size=float(test_cfg.get("min_bbox_size", -1)))


class StudentGraph(nn.Module):
    """The detector from RGB pixels to raw head outputs: channel order and normalization, backbone, neck, head."""

    mean: torch.Tensor  # buffers
    std: torch.Tensor

    def __init__(self, model: BaseDetector):
        super().__init__()
        _require_rtmdet_ins(model)
        self.model = model
        preprocessor = model.data_preprocessor
        # the model sees RGB iff its preprocessor converts mmdet's BGR images
        self.to_bgr = not getattr(preprocessor, "_channel_conversion", False)
        self.register_buffer("mean", preprocessor.mean.reshape(1, -1, 1, 1).float().clone())
        self.register_buffer("std", preprocessor.std.reshape(1, -1, 1, 1).float().clone())

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = image.flip(1) if self.to_bgr else image
        cls_scores, bbox_preds, kernel_preds, mask_feat = self.model.bbox_head(self.model.extract_feat(
            (x - self.mean) / self.std))
        return (*cls_scores, *bbox_preds, *kernel_preds, mask_feat)


def load_student(config: str | os.PathLike, checkpoint: str | os.PathLike, *, fuse: bool = True) -> BaseDetector:
    """A trained student on the CPU, RepViT fused with its own ``fuse()`` (weights read with ``weights_only``)."""
    from .inference import load_model

    return load_model(config, checkpoint, device="cpu", fuse=fuse)


def export_student(model: BaseDetector, path: str | os.PathLike, *, input_size: int | None = None, fuse: bool = True,
                   opset: int | None = None, verbose: bool = False) -> Path:
    """Export an RTMDet-Ins ``model`` (left as it is) to ``path`` with its :class:`StudentSpec` in the metadata.

    Args:
        model: an mmdet RTMDet-Ins detector (``init_detector`` / :func:`load_student`).
        path: the ``.onnx`` file to write.
        input_size: the graph's square input side (default: the config's test ``Resize`` scale).
        fuse: re-parameterize RepViT first (same outputs, faster graph); a fused model stays fused.
    """
    import onnx

    from ..sam.onnx_export import _export

    spec = student_spec(model, input_size)
    graph = StudentGraph(copy.deepcopy(model).float().cpu().eval())
    if fuse:
        reparameterize(graph)
    example = (torch.full((1, 3, spec.input_size, spec.input_size), spec.pad_value),)
    path = _export(graph, example, path, ["image"], output_names(len(spec.strides)), None, opset, verbose)
    onnx_model = onnx.load(str(path))
    entry = onnx_model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, spec.to_json()
    partial = path.with_name(path.name + ".part")
    onnx.save(onnx_model, str(partial))
    os.replace(partial, path)
    return path


def quantize_student_int8(src: str | os.PathLike, dst: str | os.PathLike,
                          calibration_images: Sequence[np.ndarray]) -> Path:
    """A static int8 (QDQ) copy of the student graph ``src`` at ``dst``, its spec kept, calibrated on RGB images.

    The first convolution (it reads pixels) and the convolutions that write the graph's outputs stay in float.
    For benchmarks only, not offered by the export tool: on a 2-core Xeon (AVX-512 + AMX, shared) the
    RepViT-M0.9 RTMDet-Ins forward at 640 ran 1.15-1.5x faster than float32 onnxruntime, but on random weights
    its head outputs were off by 30-90 % of their std (also with only the backbone quantized), so paired
    instances disagreed in label for over half of them. Check a trained model with
    :func:`agreement` before relying on it.
    """
    import onnx

    from ..sam.quantize import quantize_static_int8

    model = onnx.load(str(src))
    meta = {entry.key: entry.value for entry in model.metadata_props}
    if METADATA_KEY not in meta:
        raise ValueError(f"{src} holds no student spec; export it with tools/export_student_onnx.py")
    spec = StudentSpec.from_json(meta[METADATA_KEY])
    producers = {out: node for node in model.graph.node for out in node.output}
    outputs = {o.name for o in model.graph.output}
    keep_float = [next(node.name for node in model.graph.node if node.op_type == "Conv")]
    for name in outputs:  # walk back from each output through shape-only / elementwise ops to its conv
        node = producers.get(name)
        while node is not None and node.op_type != "Conv":
            node = producers.get(node.input[0])
        if node is not None:
            keep_float.append(node.name)
    feeds = [{"image": letterbox(image, spec.input_size, spec.pad_value)[0]} for image in calibration_images]
    del model
    dst = quantize_static_int8(src, dst, feeds, keep_float=keep_float)
    quantized = onnx.load(str(dst))
    if METADATA_KEY not in {entry.key for entry in quantized.metadata_props}:
        entry = quantized.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, meta[METADATA_KEY]
        onnx.save(quantized, str(dst))
    return dst


def torch_instances(model: BaseDetector, image: np.ndarray) -> Instances:
    """mmdet's own prediction (``inference_detector``, float32) of an ``H x W x 3`` uint8 RGB image."""
    from mmdet.apis import inference_detector

    with torch.no_grad(), torch.autocast("cpu", enabled=False):
        pred = inference_detector(model, np.ascontiguousarray(image[..., ::-1])).pred_instances  # mmdet reads BGR
    masks = pred.get("masks")
    return Instances(pred.bboxes.float().cpu(), pred.scores.float().cpu(), pred.labels.cpu(),
                     None if masks is None else masks.cpu().bool())


def agreement(ours: Instances, reference: Instances) -> dict[str, float]:
    """How far two predictions of one image are apart, instances paired in score order.

    ``count_diff`` (number of instances), ``box_max_abs`` (pixels), ``score_max_abs``, ``label_mismatch``
    (share of pairs) and ``mask_iou_min`` / ``mask_iou_mean`` over the paired masks.
    """
    n = min(len(ours.scores), len(reference.scores))
    a = torch.argsort(ours.scores, descending=True)[:n]
    b = torch.argsort(reference.scores, descending=True)[:n]
    result = {"count_diff": float(abs(len(ours.scores) - len(reference.scores))), "box_max_abs": 0.0,
              "score_max_abs": 0.0, "label_mismatch": 0.0, "mask_iou_min": 1.0, "mask_iou_mean": 1.0}
    if n == 0:
        return result
    result["box_max_abs"] = float((ours.boxes[a] - reference.boxes[b]).abs().max())
    result["score_max_abs"] = float((ours.scores[a] - reference.scores[b]).abs().max())
    result["label_mismatch"] = float((ours.labels[a] != reference.labels[b]).float().mean())
    if ours.masks is not None and reference.masks is not None:
        from ..bench.numeric_agreement import mask_iou

        iou = mask_iou(ours.masks[a], reference.masks[b])
        result["mask_iou_min"], result["mask_iou_mean"] = float(iou.min()), float(iou.mean())
    return result
