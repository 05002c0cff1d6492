"""Random full-size Grounding DINO-T for the groundingdino-py and mmdet backends, built offline for benchmarks.

Both backends read BERT from a local folder, so the first step is a random BERT-base (bert-base-uncased's
shape, the tokenizer of :func:`~repvit_plugins.grounding.random_model.bert_tokenizer`). Then:

- ``groundingdino_swint_ogc``: the package's SwinT OGC config built at random and saved as a checkpoint
  (``{'model': state_dict}``, as the official file);
- ``mmdet_grounding_dino``: mmdet's Swin-T Grounding DINO config (the same architecture), left at its random
  initialization (the backend's behaviour without a checkpoint).

:func:`save_random_backend_detector` writes everything into a folder with a ``detector.json`` holding the
``build_detector`` arguments; :func:`backend_detector_arguments` reads them back. Timings are real, outputs are not.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch

from .detector_zoo import DETECTORS
from .random_model import BENCHMARK_WORDS, bert_tokenizer

__all__ = ["BACKEND_ENTRIES", "MMDET_GROUNDING_DINO_CONFIG", "backend_detector_arguments", "save_random_bert",
           "save_random_backend_detector"]

BACKEND_ENTRIES = tuple(name for name, spec in DETECTORS.items() if spec.backend in ("original", "mmdet"))
MMDET_GROUNDING_DINO_CONFIG = "grounding_dino/grounding_dino_swin-t_pretrain_obj365_goldg_cap4m.py"
"""mmdet's Swin-T Grounding DINO config (inside the mmdet package's ``.mim/configs``)."""
_ARGUMENTS = "detector.json"


def save_random_bert(folder: str | Path, words: Sequence[str] = BENCHMARK_WORDS, seed: int = 0,
                     config: Any = None) -> Path:
    """A random BERT and its tokenizer saved in ``folder`` (a local ``text_encoder``); returns ``folder``.

    ``config``: a ``BertConfig`` (default: bert-base-uncased's shape; tests pass smaller ones).
    """
    from transformers import BertConfig, BertModel

    folder = Path(folder)
    config = config or BertConfig()  # bert-base-uncased's shape
    tokenizer = bert_tokenizer(folder / "vocab", words, config.vocab_size)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _original(folder: Path, bert: Path, seed: int) -> dict[str, str]:
    from ..runtime.quiet import quietly
    from .original_backend import OriginalGroundingDetector, load_args

    with torch.random.fork_rng(), quietly():
        torch.manual_seed(seed)
        model = OriginalGroundingDetector.build_network(load_args(None, bert, torch.device("cpu")))
    checkpoint = folder / "groundingdino_swint_ogc_random.pth"
    torch.save({"model": model.state_dict()}, checkpoint)
    return {"checkpoint": str(checkpoint), "text_encoder": str(bert)}


def _mmdet(bert: Path) -> dict[str, str]:
    import mmdet

    config = Path(mmdet.__file__).parent / ".mim" / "configs" / MMDET_GROUNDING_DINO_CONFIG
    return {"model": str(config), "text_encoder": str(bert)}


def save_random_backend_detector(name: str, folder: str | Path, seed: int = 0, bert_config: Any = None) -> Path:
    """Build zoo entry ``name`` (one of :data:`BACKEND_ENTRIES`) at random in ``folder``; returns ``folder``.

    ``bert_config``: the text encoder's ``BertConfig`` (default BERT-base; the detector itself is always full size).
    """
    if name not in BACKEND_ENTRIES:
        raise ValueError(f"no random backend model for {name!r}; these are built here: {', '.join(BACKEND_ENTRIES)}")
    folder = Path(folder)
    bert = save_random_bert(folder / "bert", seed=seed, config=bert_config)
    backend = DETECTORS[name].backend
    arguments = _original(folder, bert, seed) if backend == "original" else _mmdet(bert)
    (folder / _ARGUMENTS).write_text(json.dumps({"backend": backend, **arguments}, indent=1), encoding="utf-8")
    return folder


def backend_detector_arguments(folder: str | Path) -> dict[str, Any] | None:
    """The ``build_detector`` arguments saved in ``folder`` (``backend`` included), or ``None`` when there are none."""
    path = Path(folder) / _ARGUMENTS
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
