"""Auto-label images with a text prompt into a training dataset, with a ready RepViT student config.

Runs the ``segment`` pipeline (same flags, same resume, same torchrun shares), then writes
``train.json`` / ``val.json`` (COCO instances, RLE masks; a seeded split by image; image paths relative
to the images' common folder), ``semantic/`` (the same labels as class-index PNGs), ``labels.json``
(labels per class and split) and two configs for tools/train.py: the instance-segmentation student
(``rtmdet-ins_repvit-<arch>_autolabel.py``, a real-time single-stage RTMDet-Ins, or with
``--student mask-rcnn`` the two-stage ``mask-rcnn_repvit-<arch>_autolabel.py``) and
``fpn_repvit-<arch>_autolabel.py`` (Semantic FPN).
Filters, names, split and schedule apply when the dataset is written: change them and rerun with
``--merge-only`` to rewrite the dataset without labelling again.
"""
from __future__ import annotations

import argparse
import sys

from ..jobs.train_config import STUDENTS


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
    train.add_argument("--student", choices=STUDENTS, default=STUDENTS[0],
                       help="the instance-segmentation model to train: 'rtmdet-ins' (single-stage, real-time, its "
                            "own masks) or 'mask-rcnn' (two-stage, slower); a Semantic FPN config is "
                            "written as well")
    train.add_argument("--arch", default="m0_9", help="RepViT backbone of the student (m0_6 ... m2_3)")
    train.add_argument("--no-pretrained", action="store_true", help="train the backbone from random weights "
                                                                    "(default: the official ImageNet ones)")
    train.add_argument("--epochs", type=int, default=None,
                       help="training epochs (default: scaled to the dataset, 12 to 300)")
    train.add_argument("--image-size", type=int, nargs="+", default=None, metavar="SIZE",
                       help="training and test size: one number (square) or LONG SHORT (default: 640 for "
                            "rtmdet-ins, which trains on squares of the larger one; 1333 800 for mask-rcnn)")
    train.add_argument("--train-batch-size", type=int, default=None,
                       help="images per GPU and step (default: 8 for rtmdet-ins, 2 for mask-rcnn and the FPN)")


def run(args: argparse.Namespace) -> int:
    from ..jobs.dataset import DatasetOptions, parse_renames, write_dataset
    from ..jobs.labelling import label_images, labelling_errors
    from ..jobs.train_config import TrainingSchedule, write_training_config
    from .segment import finish_run, job_arguments, outputs_of, report

    try:
        dataset = DatasetOptions(val_fraction=args.val_fraction, seed=args.seed, min_score=args.min_score,
                                 min_mask_area=args.min_mask_area, max_instances=args.max_instances,
                                 rename=parse_renames(args.rename))
        schedule = TrainingSchedule(arch=args.arch, pretrained=not args.no_pretrained, epochs=args.epochs,
                                    image_size=args.image_size, batch_size=args.train_batch_size)
        done = label_images(**job_arguments(args, outputs_of(args, coco=True)))
        if done.assembled:
            summary = write_dataset(done.labeler.records(done.paths), done.labeler.class_names, args.out, dataset)
            configs = {kind: write_training_config(args.out, list(summary.labels), summary.images["train"], schedule,
                                                   images_root=summary.images_root, kind=kind)
                       for kind in (args.student, "fpn")}
    except labelling_errors() as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    code = report(done, args.out)
    if done.assembled:
        print(summary.render())
        print(f"train with: python tools/train.py {configs[args.student]}")
        print(f"semantic segmentation: python tools/train.py {configs['fpn']}")
    return finish_run(done, code)
