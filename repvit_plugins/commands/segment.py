"""Text-prompted segmentation of images, folders or globs: Grounding DINO boxes -> RepViT-SAM masks.

Writes annotated images and, on request, COCO instance JSON with RLE masks, per-instance PNG masks and
YOLO-seg labels. Rerun with the same arguments to resume a killed run: finished images are skipped.
"""
from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..options import ModelOptions, PipelineOptions
    from .arguments import add_option_arguments

    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    parser.add_argument("--prompt", required=True,
                        help='what to find: a caption "a dog. a frisbee." '
                             'or comma-separated class names "dog, frisbee"')
    parser.add_argument("--out", required=True, help="output folder (rerun with the same arguments to resume)")
    what = parser.add_argument_group("outputs")
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


def run(args: argparse.Namespace) -> int:
    from ..checkpoint_io import CheckpointError
    from ..grounding import DetectorLoadError, build_grounded_sam, parse_prompt
    from ..io import iter_image_paths
    from ..jobs.labeler import BatchLabeler, Outputs, RunSettingsMismatch
    from ..options import ModelOptions, PipelineOptions, run_settings
    from ..preflight import MissingWeightsError, check_weights
    from .arguments import options_from_args

    try:
        models = options_from_args(ModelOptions, args)
        options = options_from_args(PipelineOptions, args)
        class_names = parse_prompt(args.prompt)
        paths = iter_image_paths(args.inputs, recursive=args.recursive)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not paths:
        print("error: no image files found in " + " ".join(args.inputs), file=sys.stderr)
        return 2
    outputs = Outputs(annotated=not args.no_annotated, coco=args.coco, png_masks=args.png_masks, yolo=args.yolo)
    try:
        check_weights(models)  # every missing file listed at once, in seconds, before anything loads
        pipeline = build_grounded_sam(models, options)
        labeler = BatchLabeler(pipeline, args.out, args.prompt, class_names, outputs,
                               run_settings(args.prompt, models, options))
        summary = labeler.run(paths, overwrite=args.overwrite, progress=not args.no_progress)
    except (MissingWeightsError, CheckpointError, DetectorLoadError, RunSettingsMismatch, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(summary.render())
    print(f"results in {args.out}")
    return 1 if summary.failed else 0
