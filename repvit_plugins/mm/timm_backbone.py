"""Any timm model as an OpenMMLab backbone (mmdet 3.x / mmseg 1.x), through timm's ``features_only``.

Thin, like :class:`~repvit_plugins.mm.backbone.RepViTBackbone`: it holds the timm feature model (keys
``model.*``), returns its outputs as they are, and adds freezing, BN kept in eval mode and
``init_cfg=dict(type='Pretrained', checkpoint=...)`` through the project's safe loader. ``out_channels``,
``strides`` and ``feature_info`` come from timm's ``feature_info``.
"""
from __future__ import annotations

import math
import os
from typing import Sequence

import torch
from mmengine.model import BaseModule
from torch import nn
from torch.nn import functional as F

from ..models.timm_features import OutIndices, create_features, feature_levels, load_timm_features_weights
from .backbone_base import BackboneMixin

__all__ = ["TimmBackbone"]


class TimmBackbone(BackboneMixin, BaseModule):
    """A timm model's multi-scale features.

    Args:
        model_name: any timm model with ``features_only`` support (``'efficientvit_b1'``, ``'tiny_vit_11m_224'``).
        out_indices: timm's feature levels; an int takes the last N (default: the last four, strides 4-32 for
            most models; EfficientViT-M has three, at strides 16, 32, 64).
        frozen_stages: ``-1`` trains everything; ``0`` freezes what comes before the first feature level (the
            stem); ``k`` freezes up to and including feature level ``k - 1`` (parameters and BN statistics).
        norm_eval: keep every BatchNorm in eval mode while training.
        img_size: for models whose attention is built for one input size (EfficientFormer v1/v2): build it for
            ``img_size`` and zero-pad every input (bottom/right) to it; the outputs are cropped back.
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH)``: a timm checkpoint (classification layout, plain
            or under ``'model'`` / ``'state_dict'``) or an mm checkpoint of this backbone (``backbone.`` keys).
        **model_kwargs: passed to ``timm.create_model`` (``drop_path_rate``, ...).
    """

    def __init__(self, model_name: str, out_indices: OutIndices = 4, frozen_stages: int = -1,
                 norm_eval: bool = True, img_size: int | Sequence[int] | None = None,
                 init_cfg: dict | list | None = None, **model_kwargs):
        super().__init__()
        self.init_cfg = init_cfg
        self.model_name = model_name
        self.model = create_features(model_name, out_indices, img_size=img_size, **model_kwargs)
        info = feature_levels(self.model)
        self.num_levels = len(info.info)
        self.out_indices = tuple(i % self.num_levels for i in info.out_indices)
        self.feature_info = [dict(num_chs=d["num_chs"], reduction=d["reduction"], module=d["module"])
                             for d in info.get_dicts()]
        self._level_modules = [d["module"] for d in info.info]
        self.img_size = None if img_size is None else tuple(img_size) if not isinstance(img_size, int) \
            else (img_size, img_size)
        if not -1 <= frozen_stages <= self.num_levels:
            raise ValueError(f"frozen_stages must be -1 (none) .. {self.num_levels} (all levels of {model_name}), "
                             f"got {frozen_stages}")
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self._freeze()

    def _level_parameters(self, level: int) -> list[str]:
        """Names of the parameters of the module that produces timm feature level ``level``."""
        name = self._level_modules[level]
        names = [n for n, _ in self.model.named_parameters()]
        for prefix in (name, name.replace(".", "_"), f"model.{name}"):
            found = [n for n in names if n.startswith(prefix + ".")]
            if found:
                return found
        raise ValueError(f"cannot find feature level {level} ({name}) of {self.model_name} to freeze")

    @property
    def frozen_modules(self) -> list[nn.Module]:
        """Every module whose parameters all come before the end of level ``frozen_stages - 1``."""
        if self.frozen_stages < 0:
            return []
        names = [n for n, _ in self.model.named_parameters()]
        if self.frozen_stages == 0:
            stop = names.index(self._level_parameters(0)[0])
        else:
            stop = names.index(self._level_parameters(self.frozen_stages - 1)[-1]) + 1
        frozen = set(names[:stop])
        modules = []
        for prefix, module in self.model.named_modules():
            own = [f"{prefix}.{n}" if prefix else n for n, _ in module.named_parameters(recurse=False)]
            if own and all(n in frozen for n in own):
                modules.append(module)
        return modules

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.img_size is None:
            return tuple(self.model(x))
        height, width = x.shape[-2:]
        if height > self.img_size[0] or width > self.img_size[1]:
            raise ValueError(f"{self.model_name} was built for inputs up to {self.img_size} (img_size), "
                             f"got {(height, width)}")
        features = self.model(F.pad(x, (0, self.img_size[1] - width, 0, self.img_size[0] - height)))
        return tuple(f[..., :math.ceil(height / r), :math.ceil(width / r)] for f, r in zip(features, self.strides))

    def load_pretrained(self, checkpoint: str | os.PathLike, prefix: str | None = None) -> None:
        """A timm or mm checkpoint; every tensor of the feature model must be found."""
        load_timm_features_weights(self.model, checkpoint, prefix=prefix)
