"""A random-weight transformers Grounding DINO saved like a hub model, for benchmarks and tests offline.

The default config is grounding-dino-tiny's architecture (Swin-T + BERT-base, 172 M
parameters); the vocabulary puts ``[CLS]``, ``[SEP]``, ``.`` and ``?`` at bert-base-uncased's
ids 101, 102, 1012 and 1029, which the model hard-codes. Timings are real, outputs are not.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

__all__ = ["BENCHMARK_WORDS", "save_random_grounding_dino", "write_bert_vocab"]

BENCHMARK_WORDS = ("a", "an", "the", "cat", "cup", "person", "dog", "spoon", "table", "man", "woman", "car")
_FIXED = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]", 1012: ".", 1029: "?"}


def write_bert_vocab(folder: str | Path, words: Sequence[str], size: int | None = None) -> Path:
    """A BERT ``vocab.txt`` of ``size`` tokens (at least 1030 + ``words``): specials at bert-base ids, words last."""
    count = max(1030, (size or 0) - len(words))
    tokens = [_FIXED.get(i, f"[unused{i}]") for i in range(count)] + list(words)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "vocab.txt"
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return path


def save_random_grounding_dino(folder: str | Path, *, config: Any = None, words: Sequence[str] = BENCHMARK_WORDS,
                               image_size: dict[str, int] | None = None, seed: int = 0) -> Path:
    """Save a random ``GroundingDinoForObjectDetection`` (default: the grounding-dino-tiny shape) and its processor.

    Loadable offline with ``build_detector('hf', model=str(folder))``.
    """
    from transformers import (
        BertConfig,
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
    )

    folder = Path(folder)
    config = config or GroundingDinoConfig(text_config=BertConfig(vocab_size=30522))
    tokenizer = BertTokenizer(vocab_file=str(write_bert_vocab(folder / "vocab", words,
                                                              config.text_config.vocab_size)))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = GroundingDinoForObjectDetection(config).eval()
    sizes = {"size": dict(image_size)} if image_size else {}
    processor = GroundingDinoProcessor(image_processor=GroundingDinoImageProcessor(**sizes), tokenizer=tokenizer)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
