"""Fetch model weights: zoo files into the cache ($REPVIT_PLUGINS_HOME, default ~/.cache/repvit_plugins),
verified; detector-zoo models (transformers) into the Hugging Face cache."""
from __future__ import annotations

import argparse

PIPELINE_WEIGHTS = ["repvit_sam", "grounding_dino_tiny"]
"""What the default ``segment`` loads: RepViT-SAM and Grounding DINO-T (transformers)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*",
                        help="zoo names, SAM model names (sam_vit_b, edge_sam, ...) or detector names "
                             "(omdet_turbo_tiny, mm_grounding_dino_tiny, ...) to fetch "
                             "(default: what the default `segment` needs: repvit_sam and grounding_dino_tiny)")
    parser.add_argument("--list", action="store_true",
                        help="list every zoo file and detector with where it comes from and whether it is cached")
    parser.add_argument("--force", action="store_true", help="download again even when the file is cached")


def _zoo_name(name: str) -> str:
    """A SAM model name (``sam_vit_b``, ``mobile_sam``) means its official checkpoint's zoo name."""
    from ..models.sam_registry import SAM_MODELS

    spec = SAM_MODELS.get(name)
    return spec.checkpoint if spec is not None and spec.checkpoint else name


def _hub_source(name: str) -> str | None:
    """The hub id of a transformers detector-zoo entry, or ``None``."""
    from ..grounding.detector_zoo import detector_spec

    spec = detector_spec(name)
    return spec.source if spec is not None and spec.backend == "hf" else None


def _list() -> None:
    from ..grounding.detector_zoo import DETECTORS
    from ..weights.hub import cached_hub_model
    from ..weights.zoo import ZOO, cache_dir

    for name, entry in sorted(ZOO.items()):
        cached = "cached " if (cache_dir() / entry.filename).is_file() else "missing"
        print(f"{cached}  {name:<32} {entry.layout:<15} {entry.url}")
    for name, spec in DETECTORS.items():
        if spec.backend == "hf":
            cached = "cached " if cached_hub_model(str(spec.source)) else "missing"
            print(f"{cached}  {name:<32} {'detector':<15} https://huggingface.co/{spec.source}")


def _fetch_hub(repo_id: str, force: bool) -> str:
    """Download a hub model into the Hugging Face cache; its local folder."""
    from huggingface_hub import snapshot_download

    from ..weights.hub import hub_endpoint, hub_offline, reachable, use_hub_offline

    if not hub_offline() and not reachable(hub_endpoint()):
        use_hub_offline()  # answer from the cache in seconds instead of retrying a dead network for minutes
    return snapshot_download(repo_id, force_download=force)


def run(args: argparse.Namespace) -> int:
    from ..weights.checkpoint_io import CheckpointError
    from ..weights.zoo import ZOO, download, downloads_disabled, resolve_checkpoint

    if args.list:
        _list()
        return 0
    failures = 0
    for name in args.names or PIPELINE_WEIGHTS:
        hub_id = _hub_source(name)
        try:
            if hub_id is not None:
                print(f"{name}: {_fetch_hub(hub_id, args.force)}")
            elif _zoo_name(name) in ZOO:
                entry = ZOO[_zoo_name(name)]
                # REPVIT_PLUGINS_OFFLINE: report what is cached, or where to put the file, without the network
                path = resolve_checkpoint(entry.name) if downloads_disabled() else download(entry, force=args.force)
                print(f"{name}: {path}")
            else:
                print(f"error: unknown name {name!r}; see `repvit-plugins download --list`")
                failures += 1
        except (CheckpointError, OSError) as err:
            hint = (f"\n  on a machine with internet access: huggingface-cli download {hub_id} --local-dir DIR, "
                    "then pass --detector-model DIR" if hub_id else "")
            print(f"error: {name}: {str(err).strip() or type(err).__name__}{hint}")
            failures += 1
    return 1 if failures else 0
