"""What every backbone of the project does in mmdet / mmseg: freeze, keep BN in eval mode, load ``init_cfg``.

A mixin for :class:`~repvit_plugins.mm.backbone.RepViTBackbone` and
:class:`~repvit_plugins.mm.timm_backbone.TimmBackbone`, placed before ``BaseModule`` in their bases. A
backbone names its frozen modules, how it loads a checkpoint, and what it outputs (``feature_info``: timm's
``[{'num_chs', 'reduction', 'module'}, ...]``, with ``out_channels`` and ``strides`` read from it).
"""
from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from mmengine.logging import print_log
from torch import nn

if TYPE_CHECKING:  # to mypy the mixin is the BaseModule it is mixed into (untyped mmengine: Any)
    from mmengine.model import BaseModule as _MixedInto
else:
    _MixedInto = object

__all__ = ["BackboneMixin"]


class BackboneMixin(_MixedInto):
    """Freezing, ``norm_eval``, ``init_cfg=dict(type='Pretrained', checkpoint=...)`` through the safe loader."""

    frozen_stages: int
    norm_eval: bool
    init_cfg: dict | list | None
    feature_info: list[dict]

    @property
    def out_channels(self) -> list[int]:
        """Channels of every output, in order (what the neck's ``in_channels`` must be)."""
        return [level["num_chs"] for level in self.feature_info]

    @property
    def strides(self) -> list[int]:
        """Output stride of every output, in order."""
        return [level["reduction"] for level in self.feature_info]

    @property
    def frozen_modules(self) -> list[nn.Module]:
        """The modules ``frozen_stages`` covers."""
        raise NotImplementedError

    def load_pretrained(self, checkpoint: str | os.PathLike, prefix: str | None = None) -> None:
        """Load ``checkpoint`` (path or zoo name) with ``torch.load(weights_only=True)``."""
        raise NotImplementedError

    def _freeze(self) -> None:
        for module in self.frozen_modules:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True):
        """Train mode, keeping frozen stages and (with ``norm_eval``) every BN in eval mode."""
        super().train(mode)
        self._freeze()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def init_weights(self) -> None:
        """Run any other ``init_cfg`` first (as mmengine does), then load the ``Pretrained`` ones."""
        if self._is_init:
            return super().init_weights()  # mmengine warns that it ran twice; nothing is reloaded
        cfgs = self.init_cfg if isinstance(self.init_cfg, list) else [self.init_cfg] if self.init_cfg else []
        pretrained = [c for c in cfgs if c.get("type") == "Pretrained"]
        self.init_cfg = [c for c in cfgs if c.get("type") != "Pretrained"] or None
        super().init_weights()
        for cfg in pretrained:
            if "checkpoint" not in cfg:
                raise ValueError("init_cfg of type 'Pretrained' needs checkpoint=PATH_OR_ZOO_NAME "
                                 "(e.g. 'repvit_m1_1_distill_300e')")
            self.load_pretrained(cfg["checkpoint"], cfg.get("prefix"))
            print_log(f"{type(self).__name__}: loaded {cfg['checkpoint']}", logger="current", level=logging.INFO)
        self.init_cfg = (self.init_cfg or []) + pretrained or None
