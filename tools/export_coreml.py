#!/usr/bin/env python
"""Convert RepViT-SAM to Core ML (.mlpackage), as the official RepViT repository does.

The fused image encoder and the prompt encoder + mask decoder are captured with
``torch.export`` and converted with ``coremltools`` (an optional extra:
``pip install coremltools``; see ``repvit_plugins/sam/coreml_export.py``).
Conversion runs on Linux; the packages run on macOS / iOS only, so nothing here
can be executed after conversion.

Examples:
  python tools/export_coreml.py --checkpoint repvit_sam --output-dir outputs/coreml
  python tools/export_coreml.py --random-weights --precision fp32 --max-points 8
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from repvit_plugins.sam.coreml_export import PRECISIONS, convert_decoder, convert_encoder, require_coremltools


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--checkpoint", default="repvit_sam",
                         help="RepViT-SAM weights: official flat-layout file or zoo name (default: repvit_sam)")
    weights.add_argument("--random-weights", action="store_true", help="convert a randomly initialized model")
    parser.add_argument("--arch", default="m2_3", help="RepViT variant of the encoder (m2_3 = RepViT-SAM)")
    parser.add_argument("--img-size", type=int, default=1024, help="encoder input side (a multiple of 16)")
    parser.add_argument("--output-dir", default="outputs/coreml", help="folder for the .mlpackage files")
    parser.add_argument("--name", default="repvit_sam", help="file name prefix")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp16", help="Core ML compute precision")
    parser.add_argument("--max-points", type=int, default=16,
                        help="largest number of prompt points (box corners count as two) the decoder accepts")
    parts = parser.add_mutually_exclusive_group()
    parts.add_argument("--encoder-only", action="store_true", help="convert only the image encoder")
    parts.add_argument("--decoder-only", action="store_true", help="convert only the prompt encoder + mask decoder")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        require_coremltools()
    except ImportError as err:
        print(err, file=sys.stderr)
        return 2
    from repvit_plugins.models import build_repvit_sam

    sam = build_repvit_sam(None if args.random_weights else args.checkpoint, arch=args.arch, img_size=args.img_size)
    out = Path(args.output_dir)
    if not args.decoder_only:
        print("encoder ->", convert_encoder(sam, out / f"{args.name}_encoder.mlpackage", args.precision))
    if not args.encoder_only:
        print("decoder ->", convert_decoder(sam, out / f"{args.name}_decoder.mlpackage", args.precision,
                                            args.max_points))
    return 0


if __name__ == "__main__":
    sys.exit(main())
