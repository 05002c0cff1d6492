#!/usr/bin/env python
"""Train an OpenMMLab model with mmengine's Runner: mmdet, mmseg or any other config.

The config's ``default_scope`` picks the registries (``mmdet`` for the Mask R-CNN
configs, ``mmseg`` for Semantic FPN, or a project's own scope). Examples:

  python tools/train.py configs/mask_rcnn/mask-rcnn_repvit-m1.1_fpn_1x_coco.py
  bash tools/dist_train.sh configs/sem_fpn/fpn_repvit-m1.1_8xb4-40k_ade20k-512x512.py 8
  python tools/train.py CONFIG --resume                  # continue from the work dir's last checkpoint
  python tools/train.py CONFIG --cfg-options train_dataloader.batch_size=4 optim_wrapper.optimizer.lr=1e-4
"""
from __future__ import annotations

import argparse

from mmengine.config import DictAction

from repvit_plugins.mm.runner import (
    build_runner,
    finish_distributed_worker,
    load_config,
    parse_with_launcher,
    prepare_train,
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="config file (OpenMMLab Python config)")
    parser.add_argument("--work-dir", help="folder for logs and checkpoints (default: work_dirs/<config name>)")
    parser.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CHECKPOINT",
                        help="resume training: alone, from the latest checkpoint in the work dir; with a path, "
                             "from that checkpoint (model, optimizer, schedulers and iteration counter)")
    parser.add_argument("--amp", action="store_true",
                        help="automatic mixed precision (AmpOptimWrapper with dynamic loss scaling; CUDA only)")
    parser.add_argument("--auto-scale-lr", dest="auto_scale_lr", action="store_true", default=None,
                        help="scale the lr linearly with the total batch size (GPUs x images per GPU) relative "
                             "to the config's auto_scale_lr.base_batch_size (the RepViT configs enable it)")
    parser.add_argument("--no-auto-scale-lr", dest="auto_scale_lr", action="store_false",
                        help="use the config's lr as it is, whatever the number of GPUs")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, metavar="KEY=VALUE",
                        help="override config entries, e.g. train_dataloader.batch_size=4 "
                             "model.backbone.init_cfg.checkpoint=path/to/imagenet.pth")
    return parse_with_launcher(parser, argv, "tools/dist_train.sh")


def main(argv=None):
    """Train; return the Runner (its ``work_dir`` holds the logs and checkpoints)."""
    args = parse_args(argv)
    cfg = load_config(args.config, work_dir=args.work_dir, cfg_options=args.cfg_options, launcher=args.launcher)
    prepare_train(cfg, resume=args.resume, amp=args.amp, auto_scale_lr=args.auto_scale_lr)
    runner = build_runner(cfg)
    runner.train()
    return runner


if __name__ == "__main__":
    main()
    finish_distributed_worker()
