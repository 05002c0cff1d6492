"""Hooks of the distillation runs."""
from __future__ import annotations

from mmengine.hooks import Hook

__all__ = ["ValidateBeforeTrainHook"]


class ValidateBeforeTrainHook(Hook):
    """Run the validation loop once before the first training iteration.

    Logs the starting point (``distill/mIoU`` and ``distill/embed_mse`` of the
    initial student), so every run reports the agreement before and after
    distillation. Skipped when resuming.
    """

    priority = "LOWEST"

    def before_train(self, runner) -> None:
        if runner.val_loop is not None and runner.iter == 0:
            runner.val_loop.run()
