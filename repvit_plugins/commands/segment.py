"""Text-prompted segmentation of images, folders or globs: Grounding DINO boxes -> RepViT-SAM masks.

Writes annotated images and, on request, COCO instance JSON with RLE masks, per-instance PNG masks and
YOLO-seg labels. Rerun with the same arguments to resume a killed run: finished images are skipped.
Under torchrun (tools/dist_segment.sh) each rank labels its share of the sorted images and rank 0 assembles.
"""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from ..runtime.worker_exit import end_worker_process

if TYPE_CHECKING:
    from ..jobs.labeler import Outputs
    from ..jobs.labelling import Labelled


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


def outputs_of(args: argparse.Namespace, *, coco: bool | None = None) -> Outputs:
    """The files the flags ask for (``coco``: forced on or off, else ``--coco``)."""
    from ..jobs.labeler import Outputs

    return Outputs(annotated=not args.no_annotated, coco=args.coco if coco is None else coco,
                   png_masks=args.png_masks, yolo=args.yolo)


def job_arguments(args: argparse.Namespace, outputs: Outputs) -> dict[str, Any]:
    """The keyword arguments of :func:`~repvit_plugins.jobs.labelling.label_images` that the parsed flags give.

    Raises:
        ValueError: a flag's value is out of range (exit code 2).
    """
    from ..jobs.labelling import RunOptions
    from ..jobs.shards import parse_shard
    from ..options import ModelOptions, PipelineOptions
    from .arguments import options_from_args

    run = RunOptions(recursive=args.recursive, overwrite=args.overwrite, progress=not args.no_progress,
                     shard=parse_shard(args.shard) if args.shard else None, merge_only=args.merge_only)
    return dict(inputs=args.inputs, prompt=args.prompt, out=args.out, models=options_from_args(ModelOptions, args),
                options=options_from_args(PipelineOptions, args), outputs=outputs, run=run)


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


def run(args: argparse.Namespace) -> int:
    from ..jobs.labelling import label_images, labelling_errors

    try:
        done = label_images(**job_arguments(args, outputs_of(args)))
    except labelling_errors() as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return finish_run(done, report(done, args.out))
