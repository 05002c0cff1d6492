"""An exported RTMDet-Ins student (``tools/export_student_onnx.py``) run by onnxruntime, behind the detector API.

No mmdet and no config: the ``.onnx`` file carries its classes, input size and
thresholds (:class:`~repvit_plugins.grounding.rtmdet_ins.StudentSpec`). As with
:class:`~repvit_plugins.grounding.mmdet_closed_set.MMDetClosedSetDetector`, the
prompt's classes are matched to the model's (an unknown one is an error naming
both sets), boxes of other classes are dropped, and the model's own masks are
returned (``masks='detector'``). A static int8 file from the same tool runs the same way.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from ..options import PipelineOptions
from ..sam.ort_backend import create_session
from .detector import DetectorLoadError, RawDetections
from .mask_source import uses_sam
from .mmdet_closed_set import ClosedSetDetector, match_classes
from .prompts import PromptChunk
from .rtmdet_ins import METADATA_KEY, Instances, StudentSpec, decode_instances, letterbox

if TYPE_CHECKING:  # supervision is imported when detections are built, not with the package
    import supervision as sv

__all__ = ["SESSION_CONFIG", "StudentOnnxDetector", "StudentOnnxModel", "is_student_onnx"]

SESSION_CONFIG = {"session.intra_op.allow_spinning": "0"}
"""onnxruntime's workers sleep between runs instead of spinning, so they leave the cores to the post-processing
that follows each run and to other processes. RepViT-M0.9 RTMDet-Ins at 640, 2 cores shared with other work,
interleaved runs in one process: forward 0.32 s without spinning against 0.45 s with it (median of 5)."""


def is_student_onnx(path: str | os.PathLike | None) -> bool:
    """Whether ``path`` names an ``.onnx`` file (the factory's test for this backend; the spec is checked on load)."""
    return path is not None and str(path).lower().endswith(".onnx")


class StudentOnnxModel:
    """The graph in an onnxruntime session with its spec: ``predict(rgb image) -> Instances``.

    Args:
        path: ``.onnx`` file written by :func:`repvit_plugins.mm.student_export.export_student` (or its int8 copy).
        threads: onnxruntime intra-op threads (default: torch's thread count).
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise DetectorLoadError(f"no student ONNX file at {self.path}; write one with "
                                    "tools/export_student_onnx.py --config CFG --checkpoint CKPT --output FILE")
        try:
            self.session = create_session(self.path, threads, config=SESSION_CONFIG)
        except Exception as err:  # onnxruntime raises its own types for a corrupt or foreign file
            raise DetectorLoadError(f"onnxruntime could not load {self.path}: {err}; re-export it with "
                                    "tools/export_student_onnx.py") from err
        meta = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in meta:
            raise DetectorLoadError(f"{self.path} is not an exported student (no '{METADATA_KEY}' metadata); "
                                    "export it with tools/export_student_onnx.py")
        self.spec = StudentSpec.from_json(meta[METADATA_KEY])
        self.input_name = self.session.get_inputs()[0].name

    def run(self, image: np.ndarray) -> tuple[list[np.ndarray], Any]:
        """Raw head outputs for an ``H x W x 3`` uint8 RGB image, and where the letterbox put it."""
        pixels, info = letterbox(image, self.spec.input_size, self.spec.pad_value)
        return self.session.run(None, {self.input_name: pixels}), info

    def predict(self, image: np.ndarray, *, score_thr: float | None = None, with_masks: bool = True) -> Instances:
        """Instances of one ``H x W x 3`` uint8 RGB image (boxes in its pixels, masks on it)."""
        outputs, info = self.run(image)
        return decode_instances(outputs, self.spec, info, score_thr=score_thr, with_masks=with_masks)


class StudentOnnxDetector(ClosedSetDetector):
    """A closed-set RTMDet-Ins student exported to ONNX, run by onnxruntime on the CPU.

    Args:
        model: the ``.onnx`` file (``tools/export_student_onnx.py``; fp32 or its static int8 copy).
        threads: onnxruntime intra-op threads (default: torch's thread count).
        image_size, max_size: accepted for the factory's sake and ignored: the input size is fixed at export.
        Other arguments: see :class:`GroundingDetector` (``device`` and ``precision`` do not change the graph,
            which runs in the precision it was exported in).
    """

    predicts_masks = True

    def __init__(self, model: str | os.PathLike, *, threads: int | None = None, image_size: int | None = None,
                 max_size: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.runtime = StudentOnnxModel(model, threads)
        self.classes = list(self.runtime.spec.classes)
        self.name = str(self.runtime.path)
        self._with_masks = not uses_sam(self.options)

    @torch.no_grad()
    def detect(self, images: Any, prompt: str | Sequence[str], options: PipelineOptions | None = None,
               **overrides: Any) -> list[sv.Detections]:
        """As :meth:`GroundingDetector.detect`; masks are computed only when the options ask for the detector's."""
        self._with_masks = not uses_sam((options or self.options).replace(**overrides))
        return super().detect(images, prompt, options, **overrides)

    def predict_batch(self, images: list[np.ndarray], chunks: Sequence[PromptChunk], box_threshold: float,
                      text_threshold: float) -> list[list[RawDetections]]:
        mapping = match_classes(chunks[0].names, self.classes)
        lookup = torch.tensor([mapping.get(i, -1) for i in range(len(self.classes))], dtype=torch.long)
        score_thr = max(self.runtime.spec.score_thr, box_threshold)
        found: list[list[RawDetections]] = []
        for image in images:
            with torch.autocast(self.device.type, enabled=False):  # the post-processing runs in float32
                instances = self.runtime.predict(image, score_thr=score_thr, with_masks=self._with_masks)
            labels = lookup[instances.labels]
            keep = (instances.scores > box_threshold) & (labels >= 0)
            raw = (instances.boxes[keep], instances.scores[keep], labels[keep])
            found.append([raw if instances.masks is None else (*raw, instances.masks[keep])])
        return found
