#!/usr/bin/env python
"""Convert an official RepViT mmdet 2.x / mmseg 0.x checkpoint for the mmdet 3.x / mmseg 1.x configs.

The weights keep their names (the RepViT backbone uses the official module names);
the class names and palette move to meta['dataset_meta'], and the 2.x optimizer
state and config text are dropped. With --config, the weights are checked key by
key against that config's model. Examples:

  python tools/convert_mm_checkpoint.py repvit_m1_1_coco checkpoints/repvit_m1_1_coco_mmdet3.pth \\
      --config configs/mask_rcnn/mask-rcnn_repvit-m1.1_fpn_1x_coco.py
  python tools/convert_mm_checkpoint.py ~/Downloads/repvit_m1_1_ade20k.pth repvit_m1_1_ade20k_mmseg1.pth
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from repvit_plugins.weights.checkpoint_io import load_checkpoint_file, strict_load
from repvit_plugins.weights.zoo import resolve_checkpoint


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="official checkpoint: a path, or a model-zoo name such as repvit_m1_1_coco "
                                    "(downloaded into $REPVIT_PLUGINS_HOME if missing)")
    parser.add_argument("dst", help="where to write the converted checkpoint (.pth)")
    parser.add_argument("--config", help="check the converted weights against this config's model "
                                         "(every key and shape must fit)")
    return parser.parse_args(argv)


def _build_model(config: str) -> torch.nn.Module:
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope

    import repvit_plugins.mm  # noqa: F401  (registers RepViT)

    cfg = Config.fromfile(config)
    cfg.model.backbone.init_cfg = None
    init_default_scope(cfg.get("default_scope", "mmengine"))
    return MODELS.build(cfg.model)


def main(argv=None) -> Path:
    """Convert; return the path written."""
    from repvit_plugins.mm.convert import convert_mm_checkpoint

    args = parse_args(argv)
    src = resolve_checkpoint(args.src)
    converted = convert_mm_checkpoint(load_checkpoint_file(src))
    if args.config:
        strict_load(_build_model(args.config), converted["state_dict"], what=f"{src} (converted)")
    dst = Path(args.dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(converted, dst)
    classes = converted["meta"].get("dataset_meta", {}).get("classes", ())
    print(f"{src} -> {dst}: {len(converted['state_dict'])} tensors, {len(classes)} classes"
          + (f", checked against {args.config}" if args.config else ""))
    return dst


if __name__ == "__main__":
    main()
