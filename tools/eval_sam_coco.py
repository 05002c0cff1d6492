#!/usr/bin/env python
"""Zero-shot evaluation of any SAM of the zoo on a COCO-format set: box-prompt mask AP, point-prompt mIoU.

  python tools/eval_sam_coco.py data/coco/annotations/instances_val2017.json data/coco/val2017 --model repvit_sam
  python tools/eval_sam_coco.py ANN.json IMAGES --model mobile_sam --detections detector_bbox_results.json
  python tools/eval_sam_coco.py ANN.json IMAGES --model repvit_sam_m0_9 --checkpoint student.pt --points 1 3

Box prompts are the ground truth's (RepViT-SAM's and MobileSAM's tables) or a detector's boxes from a COCO
results file (``--detections``); masks are scored by pycocotools (``segm``). Point prompts follow EdgeSAM's
protocol (first click at the object's interior point farthest from its boundary, each next one in the larger
error region). Published numbers use other boxes and protocols: compare runs of this tool with each other.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("annotations", help="COCO instances JSON with the ground truth")
    parser.add_argument("images", help="folder of the images (file_name is relative to it)")
    parser.add_argument("--model", default="repvit_sam", help="SAM zoo name (repvit_plugins.models.SAM_MODELS)")
    parser.add_argument("--checkpoint", default=None,
                        help="weights (path or zoo name; default: the model's official zoo file)")
    parser.add_argument("--img-size", type=int, default=None, help="encoder input side (default: the model's)")
    parser.add_argument("--detections", default=None,
                        help="COCO bbox results JSON of a detector to prompt with (default: ground-truth boxes)")
    parser.add_argument("--points", type=int, nargs="*", default=[1, 3],
                        help="numbers of clicks to report point-prompt mIoU at (none: skip point prompts)")
    parser.add_argument("--no-boxes", action="store_true", help="skip the box-prompt AP")
    parser.add_argument("--max-images", type=int, default=None, help="evaluate only the first N images")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from repvit_plugins.models.sam_registry import sam_model
    from repvit_plugins.sam import SamSegmenter
    from repvit_plugins.sam.evaluation import box_prompt_ap, load_coco, point_prompt_miou
    from repvit_plugins.weights.checkpoint_io import CheckpointError

    try:
        checkpoint = args.checkpoint or sam_model(args.model).checkpoint
        if checkpoint is None:
            raise ValueError(f"{args.model} has no official weights; pass --checkpoint")
        segmenter = SamSegmenter(model=args.model, checkpoint=checkpoint, img_size=args.img_size, device=args.device)
        gt = load_coco(args.annotations)
    except (ValueError, CheckpointError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    ids = sorted(gt.getImgIds())[: args.max_images]
    results: dict = {"model": args.model, "checkpoint": str(checkpoint), "images": len(ids)}
    progress = not args.no_progress
    if not args.no_boxes:
        boxes = box_prompt_ap(segmenter, gt, args.images, args.detections, image_ids=ids, progress=progress)
        results["box_prompts"] = {"prompts": "detections" if args.detections else "ground truth",
                                  "masks": boxes.masks, "AP": boxes.ap, "AP50": boxes.stats[1],
                                  "AP75": boxes.stats[2], "APs": boxes.stats[3], "APm": boxes.stats[4],
                                  "APl": boxes.stats[5]}
        print(f"box prompts ({results['box_prompts']['prompts']}, {boxes.masks} masks): mask AP {boxes.ap:.3f}, "
              f"AP50 {boxes.stats[1]:.3f}, AP75 {boxes.stats[2]:.3f}")
    if args.points:
        miou = point_prompt_miou(segmenter, gt, args.images, args.points, image_ids=ids, progress=progress)
        results["point_prompts_miou"] = {str(k): v for k, v in miou.items()}
        print("point prompts: " + ", ".join(f"{k} click(s) mIoU {v:.3f}" for k, v in miou.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
