"""Serve the Gradio demo: segment by text prompt, by clicks (points / box), or everything."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..options import ModelOptions
    from .arguments import add_option_arguments

    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 to share on a network)")
    parser.add_argument("--port", type=int, default=7860, help="port to listen on")
    parser.add_argument("--max-side", type=int, default=1024, help="larger images are downscaled to this side (px)")
    parser.add_argument("--max-file-size", default="10mb", help="largest accepted upload, e.g. 10mb")
    add_option_arguments(parser.add_argument_group("models"), ModelOptions)


def _sam_choices(models) -> list[str]:
    """The demo's own SAM first, then every other zoo model with official weights."""
    from ..models.sam_registry import SAM_MODELS

    own = models.resolved_sam_model
    return [own, *(name for name, spec in SAM_MODELS.items() if spec.checkpoint and name != own)]


def _speed_choices(models) -> list[str]:
    """The demo's own speed preset first, then the others (``realtime`` only with the default detector backend)."""
    from ..options import SPEED_PRESETS

    others = [p for p in SPEED_PRESETS if p != models.speed and (p != "realtime" or models.detector == "hf")]
    return [models.speed, *others]


def run(args: argparse.Namespace) -> int:
    from ..app import build_app, default_models, launch, weights_status
    from ..options import ModelOptions
    from .arguments import options_from_args

    try:
        models = options_from_args(ModelOptions, args)
    except ValueError as err:
        print(f"error: {err}")
        return 2
    page = build_app(default_models(models), max_side=args.max_side, status=weights_status(models),
                     sam_models=_sam_choices(models), speeds=_speed_choices(models))
    launch(page, host=args.host, port=args.port, max_file_size=args.max_file_size)
    return 0
