#!/usr/bin/env python
"""Run a trained RepViT detector (mmdet config) or segmentor (mmseg config) on an image; save the drawing.

  python demo/image_demo.py photo.jpg configs/mask_rcnn/mask-rcnn_repvit-m1.1_fpn_1x_coco.py \\
      repvit_m1_1_coco_mmdet3.pth --out-file result.jpg
  python demo/image_demo.py photo.jpg configs/sem_fpn/fpn_repvit-m1.1_8xb4-40k_ade20k-512x512.py \\
      repvit_m1_1_ade20k_mmseg1.pth --out-file result.jpg --opacity 0.6
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", help="input image file")
    parser.add_argument("config", help="config the checkpoint was trained with (mmdet or mmseg)")
    parser.add_argument("checkpoint", help="trained checkpoint (tools/train.py output or a converted official one)")
    parser.add_argument("--out-file", default="result.jpg", help="where to save the visualisation")
    parser.add_argument("--device", default="cuda:0" if torch.cuda.is_available() else "cpu", help="torch device")
    parser.add_argument("--score-thr", type=float, default=0.3, help="detection: hide boxes scoring below this")
    parser.add_argument("--opacity", type=float, default=0.5, help="segmentation: opacity of the class colours")
    parser.add_argument("--fuse", action="store_true", help="re-parameterize RepViT first (same result, faster)")
    return parser.parse_args(argv)


def main(argv=None) -> Path:
    """Draw the prediction; return the output path."""
    from repvit_plugins.mm.inference import UnsupportedScopeError, draw_prediction, load_model

    args = parse_args(argv)
    if not Path(args.image).is_file():
        raise SystemExit(f"image {args.image} not found")
    try:
        model = load_model(args.config, args.checkpoint, device=args.device, fuse=args.fuse)
    except UnsupportedScopeError as err:
        raise SystemExit(str(err)) from None
    draw_prediction(model, args.image, args.out_file, score_thr=args.score_thr, opacity=args.opacity)
    print(f"saved {args.out_file}")
    return Path(args.out_file)


if __name__ == "__main__":
    main()
