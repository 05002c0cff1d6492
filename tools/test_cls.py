#!/usr/bin/env python
"""Evaluate a RepViT checkpoint on an ImageFolder validation set (resize 256, center-crop 224; top-1/top-5)."""
from __future__ import annotations

import argparse
import json

import torch

from repvit_plugins.bench.classification import evaluate_folder


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("data", help="validation folder with one sub-folder per class (ImageFolder layout, "
                                     "class folders sorted like the ImageNet synsets)")
    parser.add_argument("--arch", required=True,
                        help="m0_6, m0_9, m1_0, m1_1, m1_5, m2_3 or the first version's m1, m2, m3")
    parser.add_argument("--checkpoint", required=True, help="checkpoint path or model-zoo name "
                                                            "(official {'model': ...}, raw or timm layout)")
    parser.add_argument("--num-classes", type=int, default=1000, help="classifier width of the checkpoint")
    parser.add_argument("--no-distillation", action="store_true", help="checkpoint has a single classifier head")
    parser.add_argument("--input-size", type=int, default=224, help="center-crop side")
    parser.add_argument("--crop-ratio", type=float, default=0.875, help="crop / resize ratio (224 / 256)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch")
    parser.add_argument("--workers", type=int, default=2, help="data-loading processes")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    parser.add_argument("--fuse", action="store_true", help="evaluate the re-parameterized (fused) model")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    result = evaluate_folder(args.data, args.arch, args.checkpoint, num_classes=args.num_classes,
                             distillation=not args.no_distillation, input_size=args.input_size,
                             crop_ratio=args.crop_ratio, batch_size=args.batch_size, workers=args.workers,
                             device=args.device, fuse=args.fuse)
    print(json.dumps(result) if args.json else
          f"{result['images']} images: top-1 {result['top1']:.2f}%  top-5 {result['top5']:.2f}%")
    return result


if __name__ == "__main__":
    main()
