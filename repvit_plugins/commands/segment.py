"""Text-prompted segmentation of images, folders or globs: Grounding DINO boxes -> RepViT-SAM masks.

Writes annotated images and, on request, COCO instance JSON with RLE masks, per-instance PNG masks and
YOLO-seg labels. Rerun with the same arguments to resume a killed run: finished images are skipped.
"""
from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    parser.add_argument("--prompt", required=True,
                        help='what to find: a caption "a dog. a frisbee." or comma-separated class names')
    parser.add_argument("--out", required=True, help="output folder (rerun with the same arguments to resume)")
    what = parser.add_argument_group("outputs")
    what.add_argument("--coco", action="store_true", help="write annotations.json (COCO instances, RLE masks)")
    what.add_argument("--png-masks", action="store_true", help="write masks/<image>/<i>_<class>.png per instance")
    what.add_argument("--yolo", action="store_true", help="write labels/<image>.txt in YOLO-seg format")
    what.add_argument("--no-annotated", action="store_true", help="do not write annotated images")
    what.add_argument("--overwrite", action="store_true",
                      help="redo every image, even in an output folder made with other settings")
    det = parser.add_argument_group("detector")
    det.add_argument("--detector", default="hf", choices=["hf", "original", "mmdet"],
                     help="Grounding DINO implementation: transformers (hf), groundingdino-py (original) or mmdet")
    det.add_argument("--detector-model", default=None,
                     help="hf: hub id or local folder (default IDEA-Research/grounding-dino-tiny); "
                          "original/mmdet: config file (default: the official SwinT OGC config)")
    det.add_argument("--detector-checkpoint", default=None,
                     help="original/mmdet: checkpoint path or zoo name (default groundingdino_swint_ogc)")
    det.add_argument("--text-encoder", default=None,
                     help="original/mmdet: local BERT folder (bert-base-uncased) for offline use")
    det.add_argument("--box-threshold", type=float, default=0.35, help="minimum box score")
    det.add_argument("--text-threshold", type=float, default=0.25, help="minimum token score for a phrase")
    det.add_argument("--nms", default="class", choices=["class", "agnostic", "none"],
                     help="non-maximum suppression per class, across classes, or off")
    det.add_argument("--nms-iou", type=float, default=0.5, help="IoU above which NMS drops the weaker box")
    det.add_argument("--max-detections", type=int, default=100, help="keep at most this many boxes per image")
    sam = parser.add_argument_group("segmenter")
    sam.add_argument("--sam-checkpoint", default="repvit_sam", help="RepViT-SAM checkpoint path or zoo name")
    sam.add_argument("--sam-arch", default="m2_3",
                     help="RepViT variant of the encoder (m2_3 for the official RepViT-SAM; others for distilled students)")
    sam.add_argument("--sam-image-size", type=int, default=1024, help="encoder input side the checkpoint was made for")
    sam.add_argument("--sam-backend", default="torch", choices=["torch", "onnxruntime"],
                     help="image-encoder runtime (onnxruntime exports the encoder once into the model cache)")
    sam.add_argument("--sam-encoder-onnx", default=None, metavar="PATH",
                     help="encoder ONNX file from tools/export_onnx.py to run in onnxruntime, e.g. the static int8 "
                          "one (--quantize: about 1.6x faster on 2 CPU cores, slightly different masks); implies "
                          "--sam-backend onnxruntime")
    sam.add_argument("--multimask", action="store_true", help="3 masks per box, keep the best-scoring")
    sam.add_argument("--min-area", type=int, default=0, help="remove mask islands smaller than this (pixels)")
    sam.add_argument("--fill-holes", action="store_true", help="fill holes in masks (below --min-area if set)")
    sam.add_argument("--boxes-from-masks", action="store_true", help="replace boxes by the tight boxes of their masks")
    run = parser.add_argument_group("run")
    run.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    run.add_argument("--batch-size", type=int, default=4, help="images per detector call")
    run.add_argument("--recursive", action="store_true", help="look into sub-folders of folder inputs")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")


def _prompt_value(text: str):
    """'a dog. a cat.' stays a caption; 'dog, cat' becomes a list of class names."""
    if "," in text and "." not in text:
        return [part.strip() for part in text.split(",") if part.strip()]
    return text


def settings_of(args: argparse.Namespace) -> dict:
    """Everything that changes results; a resumed run must match it."""
    keys = ["prompt", "detector", "detector_model", "detector_checkpoint", "box_threshold", "text_threshold",
            "nms", "nms_iou", "max_detections", "sam_checkpoint", "sam_arch", "sam_image_size", "sam_encoder_onnx",
            "multimask", "min_area", "fill_holes", "boxes_from_masks"]
    return {k: getattr(args, k) for k in keys}


def build_pipeline(args: argparse.Namespace):
    """Detector + segmenter from the parsed arguments."""
    import torch

    from ..grounding import GroundedSAM, MaskOptions, build_detector
    from ..sam import SamSegmenter

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    detector = build_detector(args.detector, model=args.detector_model, checkpoint=args.detector_checkpoint,
                              text_encoder=args.text_encoder, device=device, batch_size=args.batch_size,
                              nms=None if args.nms == "none" else args.nms, nms_iou=args.nms_iou,
                              max_detections=args.max_detections)
    backend = "onnxruntime" if args.sam_encoder_onnx else args.sam_backend
    segmenter = SamSegmenter(checkpoint=args.sam_checkpoint, backend=backend, device=device, arch=args.sam_arch,
                             img_size=args.sam_image_size, encoder_onnx=args.sam_encoder_onnx)
    options = MaskOptions(multimask_output=args.multimask, min_area=args.min_area, fill_holes=args.fill_holes,
                          boxes_from_masks=args.boxes_from_masks)
    return GroundedSAM(detector, segmenter, box_threshold=args.box_threshold, text_threshold=args.text_threshold,
                       mask_options=options, batch_size=args.batch_size)


def run(args: argparse.Namespace) -> int:
    from ..checkpoints import CheckpointError
    from ..grounding import DetectorLoadError, parse_prompt
    from ..grounding.batch import BatchLabeler, Outputs, RunSettingsMismatch
    from ..io import iter_image_paths

    prompt = _prompt_value(args.prompt)
    try:
        class_names = parse_prompt(prompt)
        paths = iter_image_paths(args.inputs, recursive=args.recursive)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not paths:
        print("error: no image files found in " + " ".join(args.inputs), file=sys.stderr)
        return 2
    outputs = Outputs(annotated=not args.no_annotated, coco=args.coco, png_masks=args.png_masks, yolo=args.yolo)
    try:
        pipeline = build_pipeline(args)
        labeler = BatchLabeler(pipeline, args.out, prompt, class_names, outputs, settings_of(args))
        summary = labeler.run(paths, overwrite=args.overwrite, progress=not args.no_progress)
    except (CheckpointError, DetectorLoadError, RunSettingsMismatch, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(summary.render())
    print(f"results in {args.out}")
    return 1 if summary.failed else 0
