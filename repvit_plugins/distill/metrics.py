"""Validation metric: student-teacher mask agreement for box prompts, and embedding MSE."""
from __future__ import annotations

from typing import Sequence

import torch
from mmengine.evaluator import BaseMetric

__all__ = ["MaskAgreementMetric"]


class MaskAgreementMetric(BaseMetric):
    """Averages what :class:`~repvit_plugins.distill.model.SamEncoderDistiller` predicts on the held-out set.

    Reports ``mIoU`` (mean IoU over all box prompts of all images between the masks the
    teacher's decoder gives on the student's and on the teacher's embedding) and
    ``embed_mse`` (mean per-image embedding MSE), under the prefix ``distill/``.
    """

    default_prefix = "distill"

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for result in data_samples:
            self.results.append(dict(iou=torch.as_tensor(result["iou"]).flatten(), embed_mse=result["embed_mse"]))

    def compute_metrics(self, results: list) -> dict:
        ious = torch.cat([r["iou"] for r in results]) if results else torch.zeros(0)
        return dict(
            mIoU=float(ious.mean()) if len(ious) else float("nan"),
            embed_mse=float(sum(r["embed_mse"] for r in results) / max(len(results), 1)),
            num_boxes=int(len(ious)),
        )
