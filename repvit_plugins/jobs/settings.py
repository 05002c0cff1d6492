"""What a batch job must match to resume: every option that changes its results, and the numeric path."""
from __future__ import annotations

from typing import Any

from ..options import ModelOptions, PipelineOptions
from ..runtime.speed import speed_plan_of

__all__ = ["run_settings"]


def run_settings(prompt: Any, models: ModelOptions, options: PipelineOptions) -> dict[str, Any]:
    """Everything that changes a batch's results (a resumed run must match it), with the speed path that runs."""
    return {"prompt": prompt, **models.settings(), "speed_path": speed_plan_of(models).describe(),
            **options.settings()}
