#!/usr/bin/env python
"""Export a trained RTMDet-Ins student (mmdet config + checkpoint) to ONNX for onnxruntime.

Writes one ``.onnx`` file: RepViT fused, backbone + neck + head, the raw head
outputs out; classes, input size and thresholds in its metadata, so it runs
without mmdet or the config:

  repvit-plugins segment --detector-model student.onnx --masks detector --prompt "cat, dog" --out OUT IMAGES

``--check`` compares onnxruntime with the torch model (mmdet's own
``inference_detector``) on the check images and exits 1 when they disagree.

Examples:
  python tools/export_student_onnx.py --config work_dirs/student/config.py \\
      --checkpoint work_dirs/student/iter_3000.pth --output outputs/student.onnx --check
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DEMO_IMAGES = Path(__file__).resolve().parents[1] / "demo" / "images"
BOX_TOLERANCE = 0.5
"""Pixels; --check fails above it (float32 graph vs torch; measured about 1e-3 on the test models)."""
MASK_IOU_TOLERANCE = 0.98
"""--check fails when a paired mask's IoU with torch's falls below it."""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the student's mmdet config (an RTMDet-Ins model)")
    parser.add_argument("--checkpoint", required=True, help="its trained weights (read with weights_only=True)")
    parser.add_argument("--output", default=None,
                        help="the .onnx file to write (default: outputs/onnx/<config name>.onnx)")
    parser.add_argument("--input-size", type=int, default=None,
                        help="square input side of the graph (default: the config's test Resize scale, e.g. 640)")
    parser.add_argument("--no-fuse", action="store_true",
                        help="export without fusing RepViT's Conv-BN / RepVGG branches (same outputs, slower)")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    parser.add_argument("--check-images", nargs="+", default=[str(DEMO_IMAGES)],
                        help="images, folders or globs for --check; a few like the ones the model will see "
                             "(default: demo/images)")
    parser.add_argument("--check", action="store_true",
                        help="compare onnxruntime with the torch model on those images; exit 1 when boxes differ "
                             f"by more than {BOX_TOLERANCE} px, labels differ or a mask IoU is below "
                             f"{MASK_IOU_TOLERANCE}")
    parser.add_argument("--verbose", action="store_true", help="show the exporter's progress output")
    return parser.parse_args(argv)


def _check(model, path: Path, images: list) -> bool:
    from repvit_plugins.grounding.student_onnx import StudentOnnxModel
    from repvit_plugins.mm.student_export import agreement, torch_instances

    runtime = StudentOnnxModel(path)
    ok = True
    for i, image in enumerate(images):
        found = agreement(runtime.predict(image), torch_instances(model, image))
        good = (found["count_diff"] == 0 and found["box_max_abs"] <= BOX_TOLERANCE
                and found["label_mismatch"] == 0 and found["mask_iou_min"] >= MASK_IOU_TOLERANCE)
        ok &= good
        print(f"  image {i}: {'ok' if good else 'DIFFERS'} " + ", ".join(f"{k} {v:.4g}" for k, v in found.items()))
    return ok


def main(argv=None) -> int:
    args = parse_args(argv)
    for name in ("config", "checkpoint"):
        if not Path(getattr(args, name)).is_file():
            print(f"error: --{name} {getattr(args, name)} is not a file", file=sys.stderr)
            return 2
    from repvit_plugins.io import iter_image_paths, load_image
    from repvit_plugins.mm.student_export import export_student, load_student

    output = Path(args.output or Path("outputs/onnx") / f"{Path(args.config).stem}.onnx")
    start = time.perf_counter()
    print(f"loading {args.config} with {args.checkpoint}")
    try:
        model = load_student(args.config, args.checkpoint, fuse=not args.no_fuse)
        path = export_student(model, output, input_size=args.input_size, fuse=not args.no_fuse, opset=args.opset,
                              verbose=args.verbose)
    except (ValueError, KeyError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"student -> {path} ({time.perf_counter() - start:.1f} s)")
    if args.check:
        images = [load_image(p) for p in iter_image_paths(args.check_images)]
        if not images:
            print(f"error: no images in {' '.join(args.check_images)}", file=sys.stderr)
            return 2
        print(f"checking {path} against torch on {len(images)} images")
        if not _check(model, path, images):
            print("error: onnxruntime and torch disagree beyond the tolerances above", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
