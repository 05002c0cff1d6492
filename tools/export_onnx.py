#!/usr/bin/env python
"""Export RepViT-SAM to ONNX: the fused image encoder and the prompt encoder + mask decoder.

Writes ``<name>_encoder.onnx`` (input ``image`` 1x3xSxS, normalized and padded as
``Sam.preprocess`` does; output ``image_embeddings``) and ``<name>_decoder.onnx``
(any number of prompts and points; see ``repvit_plugins/sam/onnx_export.py``).
``--check`` runs both in onnxruntime and compares them with PyTorch.

Examples:
  python tools/export_onnx.py --checkpoint repvit_sam --output-dir outputs/onnx --check
  python tools/export_onnx.py --random-weights --arch m0_9 --img-size 512 --quantize
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from repvit_plugins.bench.numeric_agreement import embedding_error

DEMO_IMAGES = Path(__file__).resolve().parents[1] / "demo" / "images"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--checkpoint", default="repvit_sam",
                         help="RepViT-SAM weights: a file in the official flat layout or the zoo name "
                              "(default: repvit_sam, downloaded into the cache if missing)")
    weights.add_argument("--random-weights", action="store_true",
                         help="export a randomly initialized model (for tests and benchmarks; masks are meaningless)")
    parser.add_argument("--arch", default="m2_3", help="RepViT variant of the encoder (m2_3 = RepViT-SAM)")
    parser.add_argument("--img-size", type=int, default=1024, help="encoder input side (a multiple of 16)")
    parser.add_argument("--output-dir", default="outputs/onnx", help="folder for the .onnx files")
    parser.add_argument("--name", default="repvit_sam", help="file name prefix")
    parts = parser.add_mutually_exclusive_group()
    parts.add_argument("--encoder-only", action="store_true", help="export only the image encoder")
    parts.add_argument("--decoder-only", action="store_true", help="export only the prompt encoder + mask decoder")
    parser.add_argument("--no-fuse", action="store_true", help="export the encoder without fusing Conv-BN/RepVGG "
                                                              "branches (same outputs, slower)")
    parser.add_argument("--quantize", action="store_true",
                        help="also write <name>_encoder.int8.onnx (static int8, calibrated on --calibration-images) "
                             "and print its embedding error on the first calibration image")
    parser.add_argument("--calibration-images", nargs="+", default=[str(DEMO_IMAGES)],
                        help="images, folders or globs whose activations set the int8 ranges; use a few images "
                             "like the ones you will segment (default: demo/images)")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    parser.add_argument("--check", action="store_true", help="compare onnxruntime with PyTorch on random inputs; "
                                                            "exit 1 above 1e-4 relative error")
    parser.add_argument("--verbose", action="store_true", help="show the exporter's progress output")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from repvit_plugins.io import iter_image_paths, load_image
    from repvit_plugins.models import build_repvit_sam
    from repvit_plugins.runtime.malloc_tuning import tune_allocator
    from repvit_plugins.sam.onnx_export import check_decoder, check_encoder, export_decoder, export_encoder
    from repvit_plugins.sam.quantize import encoder_inputs, quantize_encoder_int8

    tune_allocator()
    sam = build_repvit_sam(None if args.random_weights else args.checkpoint, arch=args.arch, img_size=args.img_size)
    out = Path(args.output_dir)
    written, failed = [], False
    if not args.decoder_only:
        start = time.perf_counter()
        path = export_encoder(sam, out / f"{args.name}_encoder.onnx", fuse=not args.no_fuse, opset=args.opset,
                              verbose=args.verbose)
        print(f"encoder -> {path} ({time.perf_counter() - start:.1f} s)")
        written.append(("encoder", path))
        if args.quantize:
            images = [load_image(p) for p in iter_image_paths(args.calibration_images)]
            start = time.perf_counter()
            qpath = quantize_encoder_int8(path, out / f"{args.name}_encoder.int8.onnx", images)
            first = torch.from_numpy(encoder_inputs(images[:1], args.img_size)[0])
            error = check_encoder(sam, qpath, embedding_error, first)
            print(f"int8 encoder -> {qpath} ({time.perf_counter() - start:.1f} s, calibrated on {len(images)} "
                  f"images; mean abs error {error:.2e} of the embedding std)")
    if not args.encoder_only:
        start = time.perf_counter()
        path = export_decoder(sam, out / f"{args.name}_decoder.onnx", opset=args.opset, verbose=args.verbose)
        print(f"decoder -> {path} ({time.perf_counter() - start:.1f} s)")
        written.append(("decoder", path))
    if args.check:
        for kind, path in written:
            error = (check_encoder if kind == "encoder" else check_decoder)(sam, path)
            failed |= error > 1e-4
            print(f"check {kind}: onnxruntime vs PyTorch relative error {error:.2e} "
                  f"({'ok' if error <= 1e-4 else 'ABOVE 1e-4'})")
    return int(failed)


if __name__ == "__main__":
    sys.exit(main())
