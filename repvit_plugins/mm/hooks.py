"""mmengine hooks of the plugin."""
from __future__ import annotations

import logging

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from ..models.repvit import reparameterize

__all__ = ["ReparameterizeHook"]


class ReparameterizeHook(Hook):
    """Fuse the model with RepViT's own :func:`reparameterize` before testing.

    Runs after the checkpoint is loaded (``before_test``). Never uses mmcv's
    generic ``fuse_conv_bn``: it folds RepVGG-DW's outer BN into the wrong conv.
    """

    priority = "VERY_HIGH"

    def before_test(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        before = sum(p.numel() for p in model.parameters())
        reparameterize(model)
        after = sum(p.numel() for p in model.parameters())
        print_log(f"re-parameterized the model for inference: {before / 1e6:.2f}M -> {after / 1e6:.2f}M parameters",
                  logger="current", level=logging.INFO)
