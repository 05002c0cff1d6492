"""A toy model, dataset and metric in mmengine's own registries, for configs whose default_scope is not mmdet/mmseg.

Imported by a test config through ``custom_imports = dict(imports=['tests._mm_toy'])``.
"""
from __future__ import annotations

import torch
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, METRICS, MODELS
from torch import nn
from torch.nn import functional as F


@MODELS.register_module(force=True)
class ToyRegressor(BaseModel):
    """y = w . x + b, trained with MSE."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, targets=None, mode="tensor"):
        pred = self.linear(torch.stack(inputs)).squeeze(-1)
        if mode == "loss":
            return {"loss": F.mse_loss(pred, torch.stack(targets))}
        return [{"pred": p, "target": t} for p, t in zip(pred, targets)] if mode == "predict" else pred


@DATASETS.register_module(force=True)
class ToyLine(torch.utils.data.Dataset):
    """Points on the plane y = 3 x0 - 2 x1 + 1."""

    def __init__(self, size: int = 32):
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randn(size, 2, generator=gen)
        self.y = self.x @ torch.tensor([3.0, -2.0]) + 1
        self.metainfo = {}

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> dict:
        return {"inputs": self.x[index], "targets": self.y[index]}


@METRICS.register_module(force=True)
class ToyMSE(BaseMetric):
    def process(self, data_batch, data_samples) -> None:
        self.results += [float((s["pred"] - s["target"]) ** 2) for s in data_samples]

    def compute_metrics(self, results) -> dict:
        return {"mse": sum(results) / len(results)}
