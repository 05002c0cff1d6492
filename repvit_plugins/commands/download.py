"""Fetch model-zoo weights into the cache ($REPVIT_PLUGINS_HOME, default ~/.cache/repvit_plugins) and verify them."""
from __future__ import annotations

import argparse

PIPELINE_WEIGHTS = ["repvit_sam", "groundingdino_swint_ogc"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*",
                        help="zoo names or SAM model names (sam_vit_b, mobile_sam, ...) to fetch "
                             "(default: the weights the grounded pipeline needs)")
    parser.add_argument("--list", action="store_true", help="list every zoo name with its URL and whether it is cached")
    parser.add_argument("--force", action="store_true", help="download again even when the file is cached")


def _zoo_name(name: str) -> str:
    """A SAM model name (``sam_vit_b``, ``mobile_sam``) means its official checkpoint's zoo name."""
    from ..models.sam_registry import SAM_MODELS

    spec = SAM_MODELS.get(name)
    return spec.checkpoint if spec is not None and spec.checkpoint else name


def run(args: argparse.Namespace) -> int:
    from ..checkpoint_io import CheckpointError
    from ..zoo import ZOO, cache_dir, download

    if args.list:
        for name, entry in sorted(ZOO.items()):
            cached = "cached " if (cache_dir() / entry.filename).is_file() else "missing"
            print(f"{cached}  {name:<32} {entry.layout:<15} {entry.url}")
        return 0
    failures = 0
    for name in map(_zoo_name, args.names or PIPELINE_WEIGHTS):
        if name not in ZOO:
            print(f"error: unknown zoo name {name!r}; see `repvit-plugins download --list`")
            failures += 1
            continue
        try:
            print(f"{name}: {download(ZOO[name], force=args.force)}")
        except CheckpointError as err:
            print(f"error: {err}")
            failures += 1
    return 1 if failures else 0
