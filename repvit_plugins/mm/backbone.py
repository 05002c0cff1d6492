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

import logging
from typing import Sequence

import torch
from mmengine.dist import get_world_size, is_distributed
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch import nn

from ..models.factory import load_repvit_weights
from ..models.repvit import RepViT

__all__ = ["RepViTBackbone"]


class RepViTBackbone(RepViT, BaseModule):
    """RepViT backbone returning the outputs of chosen blocks.

    Args:
        arch: ``'m0_6'``, ``'m0_9'``, ``'m1_0'``, ``'m1_1'``, ``'m1_5'`` or ``'m2_3'``
            (``'M1.1'`` and ``'repvit_m1_1'`` work too).
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
        self.out_channels = self.feature_channels(self.out_indices)
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

    def _freeze(self) -> None:
        for module in self.frozen_modules:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.forward_intermediates(x, self.out_indices))

    def train(self, mode: bool = True) -> "RepViTBackbone":
        """Train mode, keeping frozen stages and (with ``norm_eval``) every BN in eval mode."""
        super().train(mode)
        self._freeze()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def init_weights(self) -> None:
        """Load ``init_cfg=dict(type='Pretrained', checkpoint=...)`` through the project's safe loader."""
        if self._is_init:
            return super().init_weights()  # mmengine warns that it ran twice; nothing is reloaded
        cfgs = self.init_cfg if isinstance(self.init_cfg, list) else [self.init_cfg] if self.init_cfg else []
        pretrained = [c for c in cfgs if c.get("type") == "Pretrained"]
        self.init_cfg = [c for c in cfgs if c.get("type") != "Pretrained"] or None
        super().init_weights()  # any other init_cfg (e.g. Kaiming) runs first, as in mmengine
        for cfg in pretrained:
            if "checkpoint" not in cfg:
                raise ValueError("init_cfg of type 'Pretrained' needs checkpoint=PATH_OR_ZOO_NAME "
                                 "(e.g. 'repvit_m1_1_distill_300e')")
            load_repvit_weights(self, cfg["checkpoint"], prefix=cfg.get("prefix"))
            print_log(f"RepViT-{self.arch_name}: loaded {cfg['checkpoint']}", logger="current", level=logging.INFO)
        self.init_cfg = (self.init_cfg or []) + pretrained or None
