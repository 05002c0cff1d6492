#!/usr/bin/env python
"""Run a SAM teacher's image encoder once over a dataset and store the embeddings for distillation.

Resumable: stop it (even with kill -9) and run the same command again; images already stored are
skipped and each image is embedded exactly once. Examples:

  # everything the training config needs (its train and val datasets, its teacher):
  python tools/precompute_sam_embeddings.py --config configs/repvit_sam/repvit-m2.3_sam-vit-h-distill_sa1b.py
  # one process per GPU (each takes every N-th image; same cache folder):
  torchrun --nproc-per-node 8 tools/precompute_sam_embeddings.py --config CONFIG
  # without a config:
  python tools/precompute_sam_embeddings.py --data-root data/sa1b --subdirs sa_000000 sa_000001 \\
      --cache-dir data/sa1b_vit_h_embeddings --teacher vit_h --teacher-checkpoint sam_vit_h_4b8939

Storage: 256 x 64 x 64 values per image at 1024 pixels, 2 MiB in float16 (about 220 GB for 1% of SA-1B).
"""
from __future__ import annotations

import argparse
import json
import os

import torch


def build_parser() -> argparse.ArgumentParser:
    from mmengine.config import DictAction

    from repvit_plugins.distill.teachers import TEACHER_TYPES

    class Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
        pass

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=Formatter)
    src = parser.add_argument_group("what to embed (a training config, or the flags below)")
    src.add_argument("--config", help="distillation config: embeds the images of its train and val datasets "
                                      "into their cache_dir with its model.teacher")
    src.add_argument("--cfg-options", nargs="+", action=DictAction, metavar="KEY=VALUE",
                     help="override config entries, e.g. model.teacher.checkpoint=/path/sam_vit_h_4b8939.pth")
    src.add_argument("--data-root", help="image folder, or the SA-1B root holding sa_000000/ ... folders")
    src.add_argument("--subdirs", nargs="+", help="sub-folders of --data-root to embed (SA-1B: sa_000000 ...)")
    src.add_argument("--ann-file", help="text file of image paths relative to --data-root, one per line")
    src.add_argument("--layout", choices=["auto", "folder", "sa1b"], default="auto",
                     help="'sa1b' keeps only images with an annotation .json beside them; 'auto' detects it")
    src.add_argument("--max-images", type=int, help="embed only the first N images of the dataset")
    src.add_argument("--cache-dir", help="where the embeddings go (created; reused and completed if it exists)")
    src.add_argument("--teacher", choices=TEACHER_TYPES, default="vit_h",
                     help="teacher model: SAM vit_b / vit_l / vit_h, repvit_sam, or vit (custom, see --teacher-vit)")
    src.add_argument("--teacher-checkpoint", help="teacher weights: a path or model-zoo name such as "
                                                  "sam_vit_h_4b8939, sam_vit_b_01ec64, repvit_sam")
    src.add_argument("--teacher-arch", default="m2_3", help="RepViT arch of a repvit_sam teacher")
    src.add_argument("--teacher-vit", type=json.loads, metavar="JSON",
                     help='ImageEncoderViT settings of a custom vit teacher, e.g. '
                          '\'{"embed_dim": 48, "depth": 2, "num_heads": 2, "global_attn_indexes": [1]}\'')
    src.add_argument("--img-size", type=int, default=1024, help="SAM input side; the student must use the same")
    run = parser.add_argument_group("how to run")
    run.add_argument("--batch-size", type=int, default=8, help="images per teacher forward pass")
    run.add_argument("--shard-size", type=int, default=64,
                     help="embeddings per shard file (the unit of work lost at most when killed)")
    run.add_argument("--dtype", choices=["float16", "float32"], default="float16",
                     help="storage precision (float16 halves the disk space; SAM embeddings are LayerNorm outputs)")
    run.add_argument("--device", default=None,
                     help="torch device (default: cuda:LOCAL_RANK when a GPU is present, else cpu)")
    run.add_argument("--amp", action="store_true", help="run the teacher under bfloat16 autocast (faster on GPUs)")
    run.add_argument("--workers", type=int, default=4, help="image-decoding worker processes")
    run.add_argument("--part", type=int, default=None,
                     help="this process embeds images i with i %% parts == part (default: $RANK or 0)")
    run.add_argument("--parts", type=int, default=None,
                     help="number of processes sharing the work (default: $WORLD_SIZE or 1)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if bool(args.config) == bool(args.data_root):
        parser.error("give either --config or --data-root (with --cache-dir and --teacher-checkpoint)")
    if args.data_root and not args.cache_dir:
        parser.error("--data-root needs --cache-dir")
    return args


def jobs(args: argparse.Namespace) -> tuple[dict, list[tuple[dict, str]]]:
    """The teacher arguments and ``(dataset arguments, cache folder)`` pairs to embed."""
    if args.data_root:
        teacher = dict(model_type=args.teacher, checkpoint=args.teacher_checkpoint, arch=args.teacher_arch,
                       vit=args.teacher_vit)
        dataset = dict(data_root=args.data_root, img_size=args.img_size, subdirs=args.subdirs,
                       ann_file=args.ann_file or "", layout=args.layout, indices=args.max_images)
        return teacher, [(dataset, args.cache_dir)]
    from repvit_plugins.mm.runner import load_config

    cfg = load_config(args.config, cfg_options=args.cfg_options)
    teacher = {k: v for k, v in cfg.model.teacher.to_dict().items() if k not in ("with_encoder", "img_size")}
    found = []
    for name in ("train_dataloader", "val_dataloader", "test_dataloader"):
        dataset = (cfg.get(name) or {}).get("dataset")
        if not dataset or not dataset.get("cache_dir"):
            continue
        dataset = {k: v for k, v in dataset.to_dict().items() if k not in ("type", "cache_dir", "with_boxes")}
        if args.max_images:
            dataset["indices"] = args.max_images
        if (dataset, cfg[name].dataset.cache_dir) not in found:
            found.append((dataset, cfg[name].dataset.cache_dir))
    if not found:
        raise SystemExit(f"{args.config}: no dataset with a cache_dir in train/val/test_dataloader; nothing to embed")
    return teacher, found


def main(argv=None) -> list[dict]:
    """Embed what is missing; return one stats dict per dataset."""
    from repvit_plugins.distill import SamDistillDataset, precompute_embeddings

    args = parse_args(argv)
    part = args.part if args.part is not None else int(os.environ.get("RANK", 0))
    parts = args.parts if args.parts is not None else int(os.environ.get("WORLD_SIZE", 1))
    device = args.device or (f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if torch.cuda.is_available() else "cpu")
    teacher, todo = jobs(args)
    results = []
    for dataset_args, cache_dir in todo:
        dataset = SamDistillDataset(**dataset_args)
        stats = precompute_embeddings(
            dataset, teacher, cache_dir, batch_size=args.batch_size, shard_size=args.shard_size, dtype=args.dtype,
            device=device, num_workers=args.workers, part=part, parts=parts, amp=args.amp,
            progress=not args.no_progress,
        )
        print(f"{dataset_args['data_root']}: embedded {stats['embedded']} new images, {stats['cached']} were "
              f"already cached ({stats['total']} in part {part}/{parts}) -> {cache_dir}", flush=True)
        results.append(stats)
    return results


if __name__ == "__main__":
    main()
