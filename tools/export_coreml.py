#!/usr/bin/env python
"""Convert RepViT-SAM to Core ML (.mlpackage), as the official RepViT repository does.

The fused image encoder and the prompt encoder + mask decoder are captured with
``torch.export`` and converted with ``coremltools`` (an optional extra:
``pip install coremltools``). Conversion runs on Linux; the packages run on
macOS / iOS only, so nothing here can be executed after conversion.

Examples:
  python tools/export_coreml.py --checkpoint repvit_sam --output-dir outputs/coreml
  python tools/export_coreml.py --random-weights --precision fp32 --max-points 8
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch


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
    parser.add_argument("--precision", choices=("fp16", "fp32"), default="fp16", help="Core ML compute precision")
    parser.add_argument("--max-points", type=int, default=16,
                        help="largest number of prompt points (box corners count as two) the decoder accepts")
    parts = parser.add_mutually_exclusive_group()
    parts.add_argument("--encoder-only", action="store_true", help="convert only the image encoder")
    parts.add_argument("--decoder-only", action="store_true", help="convert only the prompt encoder + mask decoder")
    return parser.parse_args(argv)


def _coremltools():
    try:
        import coremltools
    except ImportError:
        return None
    return coremltools


def _convert(ct, module: torch.nn.Module, example: tuple, dynamic_shapes, precision):
    """torch.export -> Core ML ML program (the TorchScript path of coremltools fails on recent torch)."""
    program = torch.export.export(module.eval(), example, dynamic_shapes=dynamic_shapes).run_decompositions({})
    return ct.convert(program, convert_to="mlprogram", compute_precision=precision)


def convert_encoder(ct, sam, path: Path, precision) -> Path:
    from repvit_plugins.sam.onnx_export import fused_encoder

    size = sam.image_encoder.img_size
    _convert(ct, fused_encoder(sam), (torch.rand(1, 3, size, size),), None, precision).save(str(path))
    return path


def convert_decoder(ct, sam, path: Path, precision, max_points: int) -> Path:
    """Inputs as the ONNX decoder (one prompt; 1 to ``max_points`` points, box corners labelled 2 and 3)."""
    from torch.export import Dim

    from repvit_plugins.sam.onnx_export import PromptDecoder

    grid = sam.prompt_encoder.image_embedding_size
    size = sam.image_encoder.img_size
    example = (torch.randn(1, sam.prompt_encoder.embed_dim, *grid), torch.rand(1, 2, 2) * size,
               torch.tensor([[2.0, 3.0]]), torch.zeros(1, 1, 4 * grid[0], 4 * grid[1]), torch.zeros(1))
    points = Dim("num_points", min=1, max=max_points)
    dynamic = (None, {1: points}, {1: points}, None, None)
    _convert(ct, PromptDecoder(sam), example, dynamic, precision).save(str(path))
    return path


def main(argv=None) -> int:
    args = parse_args(argv)
    ct = _coremltools()
    if ct is None:
        print("coremltools is not installed, so nothing was converted. Install the optional extra with\n"
              "  pip install coremltools\n"
              "(conversion works on Linux; the .mlpackage files run on macOS / iOS). "
              "For a runtime on this machine use tools/export_onnx.py.", file=sys.stderr)
        return 2
    from repvit_plugins.models import build_repvit_sam

    sam = build_repvit_sam(None if args.random_weights else args.checkpoint, arch=args.arch, img_size=args.img_size)
    precision = ct.precision.FLOAT16 if args.precision == "fp16" else ct.precision.FLOAT32
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        if not args.decoder_only:
            print("encoder ->", convert_encoder(ct, sam, out / f"{args.name}_encoder.mlpackage", precision))
        if not args.encoder_only:
            print("decoder ->", convert_decoder(ct, sam, out / f"{args.name}_decoder.mlpackage", precision,
                                                args.max_points))
    return 0


if __name__ == "__main__":
    sys.exit(main())
