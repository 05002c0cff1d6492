"""RepViT as an OpenMMLab backbone (mmdet 3.x / mmseg 1.x on mmengine).

A thin layer over the core :class:`~repvit_plugins.models.repvit.RepViT`: it
is that model (no classifier), so its keys stay ``features.N...`` and official
mmdet 2.x / mmseg 0.x checkpoints load under ``backbone.features...`` as they
are. It adds what a detector or segmentor needs: tapping block outputs,
freezing, BN kept in eval mode, SyncBN under distributed training, and
``init_cfg=dict(type='Pretrained', checkpoint=...)`` for every checkpoint
layout :func:`repvit_plugins.models.factory.load_repvit_weights` accepts.
"""
from __future__ import annotations

import os
from typing import Sequence

import torch
from mmengine.dist import get_world_size, is_distributed
from mmengine.model import BaseModule
from torch import nn

from ..models.factory import load_repvit_weights
from ..models.repvit import RepViT
from .backbone_base import BackboneMixin

__all__ = ["RepViTBackbone"]


class RepViTBackbone(RepViT, BackboneMixin, BaseModule):
    """RepViT backbone returning the outputs of chosen blocks.

    ``out_channels``, ``strides`` and ``feature_info`` (timm's format) describe the outputs.

    Args:
        arch: ``'m0_6'``, ``'m0_9'``, ``'m1_0'``, ``'m1_1'``, ``'m1_5'``, ``'m2_3'``, or the first
            version's ``'m1'``, ``'m2'``, ``'m3'`` (``'M1.1'`` and ``'repvit_m1_1'`` work too).
        out_indices: official block indices (``features[i]``) to return, in
            order. ``None`` gives the official detection taps
            (``arch.det_out_indices``: M1.1 ``(2, 6, 20, 24)``); the Semantic FPN
            configs use the segmentation taps (``arch.seg_out_indices``: M1.1
            ``(3, 7, 21, 24)``). ``'det'`` / ``'seg'`` name them too.
        frozen_stages: ``-1`` trains everything; ``0`` freezes the stem; ``k`` in
            1..4 freezes the stem and stages 1..k (parameters and BN statistics).
        norm_eval: keep every BatchNorm in eval mode while training (the official
            setting: the ImageNet statistics are never updated).
        drop_path_rate: stochastic depth, rising linearly over the blocks.
        sync_bn: under distributed training on GPUs, use SyncBatchNorm, as the
            official code does. Skipped on CPU (gloo), where torch has no SyncBN.
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH_OR_ZOO_NAME)``; the
            file may be an official ImageNet checkpoint, a timm checkpoint, a
            model-zoo name or an mm checkpoint with ``backbone.`` keys.
    """

    def __init__(self, arch: str = "m1_1", out_indices: Sequence[int] | str | None = None,
                 frozen_stages: int = -1, norm_eval: bool = True, drop_path_rate: float = 0.0,
                 sync_bn: bool = True, init_cfg: dict | list | None = None):
        super().__init__(arch, num_classes=0, drop_path_rate=drop_path_rate)
        self.init_cfg = init_cfg
        self.out_indices = self._resolve_indices(out_indices)
        self.feature_info = [dict(num_chs=c, reduction=r, module=f"features.{i}") for i, c, r in zip(
            self.out_indices, self.feature_channels(self.out_indices), self.feature_strides(self.out_indices))]
        if not -1 <= frozen_stages <= 4:
            raise ValueError(f"frozen_stages must be -1 (none) .. 4 (all), got {frozen_stages}")
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        if sync_bn and torch.cuda.is_available() and is_distributed() and get_world_size() > 1:
            nn.SyncBatchNorm.convert_sync_batchnorm(self)
        self._freeze()

    def _resolve_indices(self, out_indices: Sequence[int] | str | None) -> tuple[int, ...]:
        if out_indices is None or out_indices == "det":
            return tuple(self.arch.det_out_indices)
        if out_indices == "seg":
            return tuple(self.arch.seg_out_indices)
        count = len(self.features)
        indices = tuple(int(i) for i in out_indices)
        if not indices or any(not -count <= i < count for i in indices):
            raise ValueError(
                f"out_indices {list(out_indices)} must be block indices in 0..{count - 1} for RepViT-{self.arch_name} "
                f"(official detection taps {self.arch.det_out_indices}, segmentation taps {self.arch.seg_out_indices})")
        return tuple(i % count for i in indices)

    @property
    def frozen_modules(self) -> list[nn.Module]:
        """``features[0..k]`` covered by ``frozen_stages``."""
        if self.frozen_stages < 0:
            return []
        last = 0 if self.frozen_stages == 0 else self.arch.stage_ends[self.frozen_stages - 1]
        return list(self.features[: last + 1])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.forward_intermediates(x, self.out_indices))

    def load_pretrained(self, checkpoint: str | os.PathLike, prefix: str | None = None) -> None:
        """Official ImageNet, timm, zoo-name or mm (``backbone.``) checkpoints, strict keys."""
        load_repvit_weights(self, checkpoint, prefix=prefix)
