"""Auto-label images with a text prompt into a training dataset, with a ready RepViT Mask R-CNN config.

Runs the ``segment`` pipeline (same flags, same resume, same torchrun shares), then writes
``train.json`` / ``val.json`` (COCO instances, RLE masks; a seeded split by image; image paths relative
to the images' common folder), ``semantic/`` (the same labels as class-index PNGs), ``labels.json``
(labels per class and split) and the configs ``mask-rcnn_repvit-<arch>_autolabel.py`` and
``fpn_repvit-<arch>_autolabel.py`` (Semantic FPN) for tools/train.py.
Filters, names, split and schedule apply when the dataset is written: change them and rerun with
``--merge-only`` to rewrite the dataset without labelling again.
"""
from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from . import segment

    segment.add_arguments(parser, coco_flag=False)
    data = parser.add_argument_group("dataset (applied when it is written; --merge-only rewrites it)")
    data.add_argument("--val-fraction", type=float, default=0.2, help="share of the images in val.json")
    data.add_argument("--seed", type=int, default=0, help="seed of the train/val split")
    data.add_argument("--min-score", type=float, default=0.0, help="drop labels the teacher scored lower")
    data.add_argument("--min-mask-area", type=int, default=0, help="drop labels with fewer mask pixels")
    data.add_argument("--max-instances", type=int, default=None, help="keep at most this many labels per image")
    data.add_argument("--rename", action="append", default=[], metavar="CLASS=NAME",
                      help="category name of a prompt class, e.g. 'a puppy=dog' (repeat; equal names merge); "
                           "by default a leading article goes: 'a dog' -> 'dog'")
    train = parser.add_argument_group("training config")
    train.add_argument("--arch", default="m0_9", help="RepViT backbone of the Mask R-CNN (m0_6 ... m2_3)")
    train.add_argument("--no-pretrained", action="store_true", help="train the backbone from random weights "
                                                                    "(default: the official ImageNet ones)")
    train.add_argument("--epochs", type=int, default=None,
                       help="training epochs (default: scaled to the dataset, 12 to 300)")
    train.add_argument("--image-size", type=int, nargs=2, default=(1333, 800), metavar=("LONG", "SHORT"),
                       help="training and test resize")
    train.add_argument("--train-batch-size", type=int, default=2, help="images per GPU and step")


def run(args: argparse.Namespace) -> int:
    from ..jobs.dataset import DatasetOptions, parse_renames, write_dataset
    from ..jobs.labeler import Outputs
    from ..jobs.train_config import KINDS, TrainingSchedule, write_training_config
    from .segment import finish_run, label, labelling_errors, report

    outputs = Outputs(annotated=not args.no_annotated, coco=True, png_masks=args.png_masks, yolo=args.yolo)
    try:
        dataset = DatasetOptions(val_fraction=args.val_fraction, seed=args.seed, min_score=args.min_score,
                                 min_mask_area=args.min_mask_area, max_instances=args.max_instances,
                                 rename=parse_renames(args.rename))
        schedule = TrainingSchedule(arch=args.arch, pretrained=not args.no_pretrained, epochs=args.epochs,
                                    image_size=tuple(args.image_size), batch_size=args.train_batch_size)
        done = label(args, outputs)
        if done.assembled:
            summary = write_dataset(done.labeler.records(done.paths), done.labeler.class_names, args.out, dataset)
            configs = {kind: write_training_config(args.out, list(summary.labels), summary.images["train"], schedule,
                                                   images_root=summary.images_root, kind=kind) for kind in KINDS}
    except labelling_errors() as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    code = report(done, args.out)
    if done.assembled:
        print(summary.render())
        print(f"train with: python tools/train.py {configs['mask-rcnn']}")
        print(f"semantic segmentation: python tools/train.py {configs['fpn']}")
    return finish_run(done, code)
