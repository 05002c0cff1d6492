#!/usr/bin/env python
"""Evaluate a trained checkpoint with mmengine's Runner: mmdet, mmseg or any other config.

The config's ``default_scope`` picks the registries; the metric is the config's
``test_evaluator`` (COCO box/mask AP for Mask R-CNN, mIoU for Semantic FPN). Examples:

  python tools/test.py configs/mask_rcnn/mask-rcnn_repvit-m1.1_fpn_1x_coco.py repvit_m1_1_coco.pth
  bash tools/dist_test.sh configs/sem_fpn/fpn_repvit-m1.1_8xb4-40k_ade20k-512x512.py repvit_m1_1_ade20k.pth 8
  python tools/test.py CONFIG CHECKPOINT --fuse          # same metric, re-parameterized (faster) model
"""
from __future__ import annotations

import argparse
import json

from mmengine.config import DictAction

from repvit_plugins.mm.runner import (
    build_runner,
    finish_distributed_worker,
    load_config,
    parse_with_launcher,
    prepare_test,
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="config file (OpenMMLab Python config)")
    parser.add_argument("checkpoint", help="checkpoint written by tools/train.py or tools/convert_mm_checkpoint.py")
    parser.add_argument("--work-dir", help="folder for the test log and metrics (default: work_dirs/<config name>)")
    parser.add_argument("--fuse", action="store_true",
                        help="re-parameterize RepViT (fold every BN and the RepVGG branches) after loading; "
                             "uses RepViT's own fusion, never mmcv's fuse_conv_bn (which corrupts RepVGG blocks)")
    parser.add_argument("--out", metavar="FILE.pkl", help="also dump the raw predictions to this pickle file")
    parser.add_argument("--show-dir", help="save every test image with its prediction drawn into this folder "
                                           "(mmseg configs: under <show-dir>/vis_data/vis_image)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, metavar="KEY=VALUE",
                        help="override config entries, e.g. test_dataloader.dataset.data_root=data/coco/")
    return parse_with_launcher(parser, argv, "tools/dist_test.sh")


def _plain(value):
    try:
        return round(float(value), 4)  # python and numpy numbers
    except (TypeError, ValueError):
        return str(value)


def main(argv=None) -> dict:
    """Evaluate; return the metrics (also printed as one JSON line)."""
    args = parse_args(argv)
    cfg = load_config(args.config, work_dir=args.work_dir, cfg_options=args.cfg_options, launcher=args.launcher)
    prepare_test(cfg, checkpoint=args.checkpoint, fuse=args.fuse, out=args.out, show_dir=args.show_dir)
    runner = build_runner(cfg)
    metrics = runner.test()
    if runner.rank == 0:
        print(json.dumps({k: _plain(v) for k, v in metrics.items()}))
    return metrics


if __name__ == "__main__":
    main()
    finish_distributed_worker()
