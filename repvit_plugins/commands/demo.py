"""Serve the Gradio demo: segment by text prompt, by clicks (points / box), or everything."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 to share on a network)")
    parser.add_argument("--port", type=int, default=7860, help="port to listen on")
    parser.add_argument("--max-side", type=int, default=1024, help="larger images are downscaled to this side (px)")
    parser.add_argument("--max-file-size", default="10mb", help="largest accepted upload, e.g. 10mb")
    parser.add_argument("--sam-checkpoint", default="repvit_sam", help="RepViT-SAM checkpoint path or zoo name")
    parser.add_argument("--detector", default="hf", choices=["hf", "original", "mmdet"], help="Grounding DINO backend")
    parser.add_argument("--detector-model", default=None,
                        help="hf: hub id or local folder; original/mmdet: config file")
    parser.add_argument("--detector-checkpoint", default=None, help="original/mmdet: checkpoint path or zoo name")
    parser.add_argument("--text-encoder", default=None, help="original: local BERT folder for offline use")
    parser.add_argument("--device", default="cpu", help="torch device")


def run(args: argparse.Namespace) -> int:
    from ..app import build_app, default_models, launch, weights_status

    models = default_models(sam_checkpoint=args.sam_checkpoint, detector=args.detector,
                            detector_model=args.detector_model, detector_checkpoint=args.detector_checkpoint,
                            text_encoder=args.text_encoder, device=args.device)
    page = build_app(models, max_side=args.max_side, status=weights_status(args.sam_checkpoint))
    launch(page, host=args.host, port=args.port, max_file_size=args.max_file_size)
    return 0
