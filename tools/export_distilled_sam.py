#!/usr/bin/env python
"""Turn a distillation checkpoint into a flat RepViT-SAM checkpoint (image encoder + the teacher's decoder).

The output has the layout of the official repvit_sam.pt and loads with
build_repvit_sam(checkpoint=OUT, arch=ARCH). Examples:

  python tools/export_distilled_sam.py work_dirs/repvit-m0.9_sam-vit-h-distill_sa1b/epoch_8.pth \\
      repvit_m0_9_sam.pt --config configs/repvit_sam/repvit-m0.9_sam-vit-h-distill_sa1b.py
  python tools/export_distilled_sam.py epoch_8.pth out.pt --teacher-checkpoint sam_vit_h_4b8939
"""
from __future__ import annotations

import argparse


def build_parser() -> argparse.ArgumentParser:
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="checkpoint written by tools/train.py for a distillation config "
                                           "(student.* weights), or a bare encoder state dict")
    parser.add_argument("out", help="output file (.pt / .pth); written atomically")
    parser.add_argument("--config", help="the training config: supplies the teacher checkpoint, arch and img_size")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, metavar="KEY=VALUE",
                        help="override config entries, e.g. model.teacher.checkpoint=/path/sam_vit_h_4b8939.pth")
    parser.add_argument("--teacher-checkpoint",
                        help="full SAM checkpoint whose prompt encoder and mask decoder are copied (path or zoo "
                             "name, e.g. sam_vit_h_4b8939); default: the config's model.teacher.checkpoint")
    parser.add_argument("--arch", help="student RepViT arch (default: the config's, else read from the weights)")
    parser.add_argument("--img-size", type=int, default=None,
                        help="input side used for the load check (default: the config's, else 1024)")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip loading the result back with build_repvit_sam and decoding one box")
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.config and not args.teacher_checkpoint:
        parser.error("give --teacher-checkpoint or --config (whose model.teacher.checkpoint is used)")
    return args


def main(argv=None) -> str:
    """Export; return the output path."""
    from repvit_plugins.distill.export import export_distilled_sam

    args = parse_args(argv)
    teacher, arch, img_size = args.teacher_checkpoint, args.arch, args.img_size
    if args.config:
        from repvit_plugins.mm.runner import load_config

        model = load_config(args.config, cfg_options=args.cfg_options).model
        teacher = teacher or model.teacher.get("checkpoint")
        arch = arch or model.student.get("arch")
        img_size = img_size or model.student.get("img_size")
        if not teacher:
            raise SystemExit(f"{args.config} has no model.teacher.checkpoint; pass --teacher-checkpoint")
    out, arch = export_distilled_sam(args.checkpoint, teacher, args.out, arch=arch, img_size=img_size or 1024,
                                     verify=not args.no_verify)
    print(f"wrote {out}\nload it with: build_repvit_sam(checkpoint={str(out)!r}, arch={arch!r})")
    return str(out)


if __name__ == "__main__":
    main()
