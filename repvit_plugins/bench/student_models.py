"""Random RTMDet-Ins / Mask R-CNN students for the student benchmark (``tools/benchmark_student.py``).

Each is built from its mmdet config for the benchmark's classes, with random weights whose class scores pass any
threshold, saved once in the work folder, and run the way ``segment --masks detector`` runs it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

__all__ = ["CLASSES", "build_student", "onnx_file", "student_files", "trained_params"]

CLASSES = ("cat", "cup", "person")


def student_files(config: Path, work: Path, max_detections: int) -> tuple[Path, Path]:
    """A config for the prompt's classes (no ImageNet download) and a random checkpoint whose scores pass."""
    from mmdet.registry import MODELS
    from mmengine.config import Config

    from .. import mm  # noqa: F401 - registers RepViT

    cfg_path, ckpt_path = work / f"{config.stem}.py", work / f"{config.stem}.pth"
    if ckpt_path.is_file():
        return cfg_path, ckpt_path
    n = len(CLASSES)
    rtmdet = "rtmdet" in config.name
    head = (dict(bbox_head=dict(num_classes=n)) if rtmdet else
            dict(roi_head=dict(bbox_head=dict(num_classes=n), mask_head=dict(num_classes=n))))
    test = dict(max_per_img=max_detections) if rtmdet else dict(rcnn=dict(max_per_img=max_detections))
    cfg_path.write_text(f"_base_ = {str(config)!r}\nmodel = dict(backbone=dict(init_cfg=None), test_cfg={test!r}, "
                        f"**{head!r})\n")
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(str(cfg_path)).model).eval()
    for name, param in model.named_parameters():  # class biases at 0: random scores near 0.5, not 0.01
        if name.endswith("bias") and ("rtm_cls" in name or "fc_cls" in name):
            param.data.zero_()
    torch.save({"state_dict": model.state_dict(), "meta": {"dataset_meta": {"classes": CLASSES}}}, ckpt_path)
    return cfg_path, ckpt_path


def onnx_file(cfg: Path, ckpt: Path, int8: bool, images: list[np.ndarray]) -> Path:
    """The student exported to ONNX (and quantized to static int8 on ``images``), made once next to ``ckpt``."""
    from ..mm.student_export import export_student, load_student, quantize_student_int8

    path = ckpt.with_name(f"{ckpt.stem}.onnx")
    if not path.is_file():
        export_student(load_student(str(cfg), str(ckpt)), path)
    if not int8:
        return path
    quantized = ckpt.with_name(ckpt.stem + "_int8.onnx")
    if not quantized.is_file():
        quantize_student_int8(path, quantized, images[:3])
    return quantized


def build_student(config: Path, runtime: str, work: Path, max_detections: int, images: list[np.ndarray]):
    """``(detect(image), trained parameters)`` of a random student of mmdet ``config`` run by ``runtime``."""
    from ..grounding import build_detector
    from ..options import PipelineOptions

    options = PipelineOptions(box_threshold=0.0, max_detections=max_detections, masks="detector")
    cfg, ckpt = student_files(config, work, max_detections)
    if runtime.startswith("onnx"):
        detector = build_detector("mmdet", model=str(onnx_file(cfg, ckpt, runtime == "onnx-int8", images)),
                                  options=options)
    else:
        from ..grounding.mmdet_closed_set import MMDetClosedSetDetector

        detector = MMDetClosedSetDetector(cfg, ckpt, fuse=runtime != "unfused", channels_last=runtime != "unfused",
                                          precision="bf16" if runtime == "bf16" else "fp32", options=options)
    prompt = ". ".join(CLASSES) + "."
    return (lambda image: detector.detect([image], prompt)[0]), trained_params(ckpt)


def trained_params(checkpoint: Path) -> int:
    """Parameters of the model as trained (before fusing), from its checkpoint."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    return sum(t.numel() for key, t in state.items() if not key.endswith(("running_mean", "running_var",
                                                                           "num_batches_tracked")))
