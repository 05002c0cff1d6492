"""The labelling job as one function: images + models + options -> labelled folder and a :class:`Labelled` result.

:func:`label_images` is what ``repvit-plugins segment`` / ``autolabel`` and ``tools/soak_labeler.py`` run: it finds
the images, takes this process's share (``--shard`` or torchrun), checks weights and prompt before any model loads,
builds the pipeline, labels (resuming), gathers the ranks' summaries and assembles the outputs; with
``merge_only`` it only assembles.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..options import ModelOptions, PipelineOptions
from ..runtime.stage_timer import StageTimer
from .labeler import BatchLabeler, Outputs, Summary
from .shards import Shard

__all__ = ["Labelled", "RunOptions", "label_images", "labelling_errors"]


@dataclass(frozen=True)
class RunOptions:
    """How the job runs (nothing here changes its results).

    Attributes:
        recursive: look into sub-folders of folder inputs.
        overwrite: redo every image, even in an output folder made with other settings.
        progress: show a progress bar.
        shard: this process's share; ``None``: the one torchrun describes in the environment (all images without).
        merge_only: load no model, only assemble the outputs from the records written so far.
    """

    recursive: bool = False
    overwrite: bool = False
    progress: bool = True
    shard: Shard | None = None
    merge_only: bool = False


@dataclass
class Labelled:
    """A finished labelling run: its labeller, all its images and the (all-rank) summary."""

    labeler: BatchLabeler
    paths: list[Path]
    summary: Summary
    shard: Shard

    @property
    def assembled(self) -> bool:
        """Whether this process wrote the assembled outputs (one rank of several does not)."""
        return self.shard.assembles


def label_images(inputs: Sequence[str | Path], prompt: str, out: str | Path, *, models: ModelOptions | None = None,
                 options: PipelineOptions | None = None, outputs: Outputs | None = None,
                 run: RunOptions | None = None, timer: StageTimer | None = None) -> Labelled:
    """Label the images of ``inputs`` (files, folders, globs; this process's share) with ``prompt`` into ``out``.

    Args:
        timer: collects the seconds of the stages ``load``, ``detect``, ``encoder``, ``decoder``, ``masks`` and
            ``write``; ``None`` (the default) times nothing.

    Raises:
        the errors of :func:`labelling_errors`: the message says what is wrong.
    """
    from ..grounding import build_grounded_sam, parse_prompt
    from ..grounding.mask_source import uses_sam
    from ..grounding.prompt_limits import check_prompt_fits
    from ..io import iter_image_paths
    from ..weights.preflight import check_weights
    from .labeler import sorted_paths
    from .settings import run_settings

    models, options = models or ModelOptions(), options or PipelineOptions()
    outputs, run = outputs or Outputs(), run or RunOptions()
    shard = run.shard or Shard.from_env()
    models = models.replace(device=shard.device(models.device))
    class_names = parse_prompt(prompt)
    paths = sorted_paths(iter_image_paths([str(i) for i in inputs], recursive=run.recursive))
    if not paths:
        raise ValueError("no image files found in " + " ".join(str(i) for i in inputs))
    settings = run_settings(prompt, models, options)
    if run.merge_only:
        labeler = BatchLabeler(None, out, prompt, class_names, outputs, settings)
        summary = labeler.merge_summary(paths)
        labeler.finish(paths, summary)
        return Labelled(labeler, paths, summary, Shard())
    check_weights(models, sam=uses_sam(options))  # every missing file listed at once, before anything loads
    check_prompt_fits(models, class_names)  # a class the text encoder cannot take fails now, not per image
    shard.join()
    try:
        pipeline = build_grounded_sam(models, options)
        pipeline.timer = timer
        labeler = BatchLabeler(pipeline, out, prompt, class_names, outputs, settings, timer=timer)
        summary = labeler.label(shard.share(paths), overwrite=run.overwrite, progress=run.progress)
        parts = shard.gather(summary)
        if shard.assembles:
            summary = Summary.combine(parts, len(paths))
            labeler.finish(paths, summary)
    finally:
        shard.close()
    return Labelled(labeler, paths, summary, shard)


def labelling_errors() -> tuple[type[BaseException], ...]:
    """What :func:`label_images` raises for a user's mistake or a missing file (reported in one line)."""
    from ..grounding import DetectorLoadError
    from ..weights.checkpoint_io import CheckpointError
    from ..weights.preflight import MissingWeightsError
    from .labeler import RunSettingsMismatch

    return MissingWeightsError, CheckpointError, DetectorLoadError, RunSettingsMismatch, OSError, ValueError
