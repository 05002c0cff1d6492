"""Text-prompted segmentation of images, folders or globs: Grounding DINO boxes -> RepViT-SAM masks.

Writes annotated images and, on request, COCO instance JSON with RLE masks, per-instance PNG masks and
YOLO-seg labels. Rerun with the same arguments to resume a killed run: finished images are skipped.
Under torchrun (tools/dist_segment.sh) each rank labels its share of the sorted images and rank 0 assembles.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..runtime.worker_exit import end_worker_process


def add_arguments(parser: argparse.ArgumentParser, *, coco_flag: bool = True) -> None:
    """The flags of ``segment`` (``autolabel`` shares them: it always writes COCO, so ``coco_flag=False``)."""
    from ..options import ModelOptions, PipelineOptions
    from .arguments import add_option_arguments

    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    parser.add_argument("--prompt", required=True,
                        help='what to find: a caption "a dog. a frisbee." '
                             'or comma-separated class names "dog, frisbee"')
    parser.add_argument("--out", required=True, help="output folder (rerun with the same arguments to resume)")
    what = parser.add_argument_group("outputs")
    if coco_flag:
        what.add_argument("--coco", action="store_true", help="write annotations.json (COCO instances, RLE masks)")
    what.add_argument("--png-masks", action="store_true", help="write masks/<image>/<i>_<class>.png per instance")
    what.add_argument("--yolo", action="store_true", help="write labels/<image>.txt in YOLO-seg format")
    what.add_argument("--no-annotated", action="store_true", help="do not write annotated images")
    what.add_argument("--overwrite", action="store_true",
                      help="redo every image, even in an output folder made with other settings")
    add_option_arguments(parser.add_argument_group("models"), ModelOptions)
    add_option_arguments(parser.add_argument_group("detection and masks"), PipelineOptions)
    run = parser.add_argument_group("run")
    run.add_argument("--recursive", action="store_true", help="look into sub-folders of folder inputs")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--shard", metavar="RANK/WORLD", help="label only this share of the sorted images (e.g. 1/4) "
                                                          "and assemble nothing; under torchrun "
                                                          "(tools/dist_segment.sh) the ranks come from RANK/WORLD_SIZE")
    run.add_argument("--merge-only", action="store_true",
                     help="load no model: assemble the outputs from the records written so far (after --shard runs "
                          "or a killed rank was rerun)")


@dataclass
class Labelled:
    """A finished labelling run: its labeller, all its images and the (all-rank) summary."""

    labeler: Any
    paths: list[Path]
    summary: Any
    shard: Any

    @property
    def assembled(self) -> bool:
        """Whether this process wrote the assembled outputs (one rank of several does not)."""
        return self.shard.assembles


def label(args: argparse.Namespace, outputs) -> Labelled:
    """Label ``args.inputs`` (this process's share of them) into ``args.out``, or only assemble (``--merge-only``).

    Raises:
        ValueError, OSError, MissingWeightsError, CheckpointError, DetectorLoadError, RunSettingsMismatch:
        the message says what is wrong (exit code 2).
    """
    from ..grounding import build_grounded_sam, parse_prompt
    from ..grounding.prompt_limits import check_prompt_fits
    from ..io import iter_image_paths
    from ..jobs.labeler import BatchLabeler, Summary, sorted_paths
    from ..jobs.settings import run_settings
    from ..jobs.shards import Shard, parse_shard
    from ..options import ModelOptions, PipelineOptions
    from ..weights.preflight import check_weights
    from .arguments import options_from_args

    shard = parse_shard(args.shard) if args.shard else Shard.from_env()
    models = options_from_args(ModelOptions, args)
    models = models.replace(device=shard.device(models.device))
    options = options_from_args(PipelineOptions, args)
    class_names = parse_prompt(args.prompt)
    paths = sorted_paths(iter_image_paths(args.inputs, recursive=args.recursive))
    if not paths:
        raise ValueError("no image files found in " + " ".join(args.inputs))
    settings = run_settings(args.prompt, models, options)
    if args.merge_only:
        labeler = BatchLabeler(None, args.out, args.prompt, class_names, outputs, settings)
        summary = labeler.merge_summary(paths)
        labeler.finish(paths, summary)
        return Labelled(labeler, paths, summary, Shard())
    check_weights(models, sam=options.masks == "sam")  # every missing file listed at once, before anything loads
    check_prompt_fits(models, class_names)  # a class the text encoder cannot take fails now, not per image
    shard.join()
    try:
        labeler = BatchLabeler(build_grounded_sam(models, options), args.out, args.prompt, class_names, outputs,
                               settings)
        summary = labeler.label(shard.share(paths), overwrite=args.overwrite, progress=not args.no_progress)
        parts = shard.gather(summary)
        if shard.assembles:
            summary = Summary.combine(parts, len(paths))
            labeler.finish(paths, summary)
    finally:
        shard.close()
    return Labelled(labeler, paths, summary, shard)


def report(done: Labelled, out: str) -> int:
    """Print the run's summary; the exit code (1 when an image failed or, after a merge, has no record)."""
    shard = done.shard
    print(done.summary.render())
    if done.assembled:
        print(f"results in {out}")
    elif shard.launched:
        print(f"rank {shard.rank} of {shard.world_size}: its share is done; rank 0 assembles the outputs")
    else:
        print(f"share {shard.rank}/{shard.world_size} is done; when every share is, assemble with the same "
              "arguments and --merge-only")
    return 1 if done.summary.failed else 0


def finish_run(done: Labelled, code: int) -> int:
    """``code``, the run's exit code; a ``torchrun`` worker leaves with it at once, before the interpreter
    teardown that gloo's threads can abort (:mod:`~repvit_plugins.runtime.worker_exit`)."""
    if done.shard.launched:
        end_worker_process(code)
    return code


def labelling_errors() -> tuple[type[BaseException], ...]:
    """What :func:`label` raises for a user's mistake or a missing file (reported in one line, exit code 2)."""
    from ..grounding import DetectorLoadError
    from ..jobs.labeler import RunSettingsMismatch
    from ..weights.checkpoint_io import CheckpointError
    from ..weights.preflight import MissingWeightsError

    return MissingWeightsError, CheckpointError, DetectorLoadError, RunSettingsMismatch, OSError, ValueError


def run(args: argparse.Namespace) -> int:
    from ..jobs.labeler import Outputs

    outputs = Outputs(annotated=not args.no_annotated, coco=args.coco, png_masks=args.png_masks, yolo=args.yolo)
    try:
        done = label(args, outputs)
    except labelling_errors() as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return finish_run(done, report(done, args.out))
