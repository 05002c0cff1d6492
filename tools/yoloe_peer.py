"""YOLOE (ultralytics), a text-prompted instance segmenter, as a benchmark peer: random weights, nothing downloaded.

ultralytics is AGPL-3.0: the library never imports it; benchmarks do, lazily, through this module, and only
where it is installed (``pip install --no-deps ultralytics==8.4.190``; its own dependencies are already in the
project's environment). Offline rules this module keeps:

- the model is built from its yaml (``YOLOE("yoloe-11s-seg.yaml")``: random weights, no download);
- class embeddings are random (``set_classes(names, torch.randn(1, n, 512))``), set once: ``get_text_pe``
  would download MobileCLIP, and importing ``ultralytics.nn.text_model`` pip-installs CLIP when it is missing.

Timings are real, outputs are not.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

__all__ = ["EMBED_DIM", "INSTALL_COMMAND", "MODELS", "YoloePeer", "missing_reason"]

INSTALL_COMMAND = "pip install --no-deps ultralytics==8.4.190"
MODELS = ("yoloe-11s-seg", "yoloe-11l-seg")
EMBED_DIM = 512
"""Width of YOLOE's text embeddings (MobileCLIP's)."""


def missing_reason() -> str | None:
    """``None`` when ultralytics imports, else why not and the command that installs it."""
    try:
        import ultralytics  # noqa: F401 - only whether it imports
    except ImportError as err:
        return f"ultralytics is not importable ({err}); to measure the peer: {INSTALL_COMMAND}"
    return None


class YoloePeer:
    """A random-weight YOLOE segmentation model with ``names`` as its classes; :meth:`predict` one RGB image.

    Args:
        model: one of :data:`MODELS`.
        names: the class names of the prompt.
        image_size: inference side (letterboxed), 640 as YOLOE is trained.
        max_detections: boxes kept per image (the benchmark's ``--max-detections``).
        conf: score threshold (0 with random weights, so every image gets boxes).
        seed: torch seed of the weights and the class embeddings.
    """

    def __init__(self, model: str, names: Sequence[str], *, image_size: int = 640, max_detections: int = 10,
                 conf: float = 0.0, seed: int = 0):
        if model not in MODELS:
            raise ValueError(f"unknown YOLOE model {model!r}; choose one of {', '.join(MODELS)}")
        reason = missing_reason()
        if reason:
            raise ImportError(reason)
        from ultralytics import YOLOE

        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.model = YOLOE(f"{model}.yaml")
            self.model.set_classes(list(names), torch.randn(1, len(names), EMBED_DIM))
        self.names = list(names)
        self.predict_args = dict(imgsz=image_size, conf=conf, max_det=max_detections, retina_masks=True,
                                 verbose=False, save=False)

    def predict(self, image: np.ndarray) -> Any:
        """``supervision.Detections`` of one RGB ``uint8`` image: boxes, scores, class ids and full-size masks."""
        import supervision as sv

        bgr = np.ascontiguousarray(image[..., ::-1])  # ultralytics reads arrays as OpenCV's BGR
        result = self.model.predict(bgr, **self.predict_args)[0]
        detections = sv.Detections.from_ultralytics(result)
        if detections.mask is None:
            detections.mask = np.zeros((len(detections), *image.shape[:2]), dtype=bool)
        return detections
