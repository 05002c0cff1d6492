"""Random-weight transformers detectors of the zoo's shapes, saved like hub models, for benchmarks and tests offline.

:func:`save_random_detector` builds any ``hf`` entry of :data:`~repvit_plugins.grounding.detector_zoo.DETECTORS`
at full size (or with a smaller ``config=`` for tests) and saves model + processor into a folder that
``build_detector('hf', model=folder)`` loads without a network. Timings are real, outputs are not.

Tokenizers are built offline from the benchmark words:

- BERT (Grounding DINO, MM-Grounding-DINO / LLMDet): a ``vocab.txt`` with ``[CLS]``, ``[SEP]``, ``.`` and ``?``
  at bert-base-uncased's ids 101, 102, 1012 and 1029, which those models hard-code;
- CLIP (OmDet-Turbo, OWLv2): byte-level BPE over the 256 ``bytes_to_unicode()`` characters (and their ``</w>``
  forms), the two special tokens and merges that spell each benchmark word as one token.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from .detector_zoo import DETECTORS

__all__ = ["BENCHMARK_WORDS", "bert_tokenizer", "clip_tokenizer", "random_detector_config", "save_random_detector",
           "write_bert_vocab", "write_clip_vocab"]

BENCHMARK_WORDS = ("a", "an", "the", "cat", "cup", "person", "dog", "spoon", "table", "man", "woman", "car")
_FIXED = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]", 1012: ".", 1029: "?"}

SWIN_BASE = dict(embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32], window_size=12, image_size=384,
                 out_indices=[2, 3, 4])
"""Swin-B at 384 as grounding-dino-base and LLMDet-B use it (the defaults are Swin-T)."""
OWLV2_BASE_IMAGE_SIZE = 960
"""owlv2-base-patch16's input side; ``Owlv2VisionConfig()`` defaults to 768 (its patch, 16, matches)."""


# -- tokenizers -------------------------------------------------------------------------------------------
def write_bert_vocab(folder: str | Path, words: Sequence[str], size: int | None = None) -> Path:
    """A BERT ``vocab.txt`` of ``size`` tokens (at least 1030 + ``words``): specials at bert-base ids, words last."""
    count = max(1030, (size or 0) - len(words))
    tokens = [_FIXED.get(i, f"[unused{i}]") for i in range(count)] + list(words)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "vocab.txt"
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return path


def write_clip_vocab(folder: str | Path, words: Sequence[str], size: int | None = None) -> tuple[Path, Path]:
    """A CLIP ``vocab.json`` and ``merges.txt`` in ``folder``: byte characters, one token per word, specials last.

    Each word is spelled left to right by merges (``c a``, ``ca t</w>``), every intermediate piece in the vocabulary.
    With ``size`` the vocabulary is padded to ``size`` tokens, so ``<|startoftext|>`` / ``<|endoftext|>`` get
    ids ``size - 2`` / ``size - 1`` as in CLIP's (49406 / 49407), which the text config names.
    """
    from transformers.models.clip.tokenization_clip import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars]
    merges: list[str] = []
    for word in words:
        pieces = [*word[:-1], word[-1] + "</w>"]
        while len(pieces) > 1:
            merges.append(f"{pieces[0]} {pieces[1]}")
            pieces = [pieces[0] + pieces[1], *pieces[2:]]
            tokens.append(pieces[0])
    tokens = list(dict.fromkeys(tokens))
    tokens += [f"<|unused{i}|>" for i in range(len(tokens), (size or 0) - 2)] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: i for i, token in enumerate(tokens)}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("\n".join(["#version: 0.2", *dict.fromkeys(merges)]) + "\n", encoding="utf-8")
    return folder / "vocab.json", folder / "merges.txt"


def bert_tokenizer(folder: str | Path, words: Sequence[str] = BENCHMARK_WORDS, size: int | None = None) -> Any:
    """A slow ``BertTokenizer`` on :func:`write_bert_vocab`'s ``vocab.txt`` (written into ``folder``)."""
    from transformers import BertTokenizer

    return BertTokenizer(vocab_file=str(write_bert_vocab(folder, words, size)))


def clip_tokenizer(folder: str | Path, words: Sequence[str] = BENCHMARK_WORDS, max_length: int = 77,
                   size: int | None = None) -> Any:
    """A slow ``CLIPTokenizer`` on :func:`write_clip_vocab`'s files (written into ``folder``).

    ``max_length``: the text encoder's positions, which processors pad to (CLIP 77, OWLv2 16); ``size``: the
    text encoder's vocabulary size (special tokens last).
    """
    from transformers import CLIPTokenizer

    vocab, merges = write_clip_vocab(folder, words, size)
    return CLIPTokenizer(str(vocab), str(merges), model_max_length=max_length)


# -- processors, per family --------------------------------------------------------------------------------
def _bert_processor(folder: Path, config: Any, words: Sequence[str], size: dict[str, int] | None) -> Any:
    from transformers import GroundingDinoImageProcessor, GroundingDinoProcessor

    tokenizer = bert_tokenizer(folder / "vocab", words, config.text_config.vocab_size)
    options: dict[str, Any] = {"size": size} if size else {}
    return GroundingDinoProcessor(image_processor=GroundingDinoImageProcessor(**options), tokenizer=tokenizer)


def _clip_tokenizer_of(folder: Path, config: Any, words: Sequence[str]) -> Any:
    text = config.text_config
    return clip_tokenizer(folder / "vocab", words, text.max_position_embeddings, text.vocab_size)


def _omdet_processor(folder: Path, config: Any, words: Sequence[str], size: dict[str, int] | None) -> Any:
    from transformers import DetrImageProcessor, OmDetTurboProcessor

    side = config.image_size
    image_processor = DetrImageProcessor(size=size or {"height": side, "width": side}, do_pad=False)
    return OmDetTurboProcessor(image_processor=image_processor, tokenizer=_clip_tokenizer_of(folder, config, words))


def _owlv2_processor(folder: Path, config: Any, words: Sequence[str], size: dict[str, int] | None) -> Any:
    from transformers import Owlv2ImageProcessor, Owlv2Processor

    side = config.vision_config.image_size
    image_processor = Owlv2ImageProcessor(size=size or {"height": side, "width": side})
    return Owlv2Processor(image_processor=image_processor, tokenizer=_clip_tokenizer_of(folder, config, words))


_FAMILIES: dict[str, tuple[str, str, Callable[..., Any]]] = {
    "grounding-dino": ("GroundingDinoConfig", "GroundingDinoForObjectDetection", _bert_processor),
    "mm-grounding-dino": ("MMGroundingDinoConfig", "MMGroundingDinoForObjectDetection", _bert_processor),
    "omdet-turbo": ("OmDetTurboConfig", "OmDetTurboForObjectDetection", _omdet_processor),
    "owlv2": ("Owlv2Config", "Owlv2ForObjectDetection", _owlv2_processor),
}
"""transformers ``model_type`` -> (config class, model class, processor builder)."""

_FULL_SIZE: dict[str, dict[str, Any]] = {
    "grounding_dino_base": {"backbone_config": SWIN_BASE},
    "llmdet_base": {"backbone_config": SWIN_BASE},
    "owlv2_base": {"vision_config": {"image_size": OWLV2_BASE_IMAGE_SIZE}},
}
"""Config arguments of entries whose shape is not their family's default config (Swin-T + BERT-base,
OmDet-Turbo-T, OWLv2 B/16 text and vision)."""


def _hf_entry(name: str) -> str:
    """The transformers family of zoo entry ``name``; an error listing the ``hf`` entries otherwise."""
    spec = DETECTORS.get(name)
    if spec is None or spec.backend != "hf":
        known = ", ".join(n for n, s in DETECTORS.items() if s.backend == "hf")
        raise ValueError(f"no random model for {name!r}: save_random_detector builds the transformers entries of "
                         f"the detector zoo ({known})")
    return spec.family


def random_detector_config(name: str) -> Any:
    """The full-size transformers config of detector-zoo entry ``name`` (``hf`` entries only)."""
    import transformers

    config_class = getattr(transformers, _FAMILIES[_hf_entry(name)][0])
    arguments = dict(_FULL_SIZE.get(name, {}))
    if isinstance(arguments.get("backbone_config"), dict):
        arguments["backbone_config"] = transformers.SwinConfig(**arguments["backbone_config"])
    return config_class(**arguments)


def save_random_detector(name: str, folder: str | Path, *, config: Any = None,
                         words: Sequence[str] = BENCHMARK_WORDS, image_size: dict[str, int] | None = None,
                         seed: int = 0) -> Path:
    """Save a random model of detector-zoo entry ``name`` and its processor into ``folder``; returns ``folder``.

    Args:
        name: an ``hf`` entry of the detector zoo, e.g. ``'omdet_turbo_tiny'``.
        folder: where ``config.json``, the weights and the processor files go.
        config: a config of the entry's family to use instead of the full-size one (tests pass tiny ones).
        words: the words the tokenizer knows as whole tokens (others fall back to pieces / ``[UNK]``).
        image_size: the processor's ``size`` (default: the model's own input size).
        seed: torch seed of the random weights.
    """
    import transformers

    _, model_name, make_processor = _FAMILIES[_hf_entry(name)]
    folder = Path(folder)
    config = config or random_detector_config(name)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = getattr(transformers, model_name)(config).eval()
    model.save_pretrained(folder)
    make_processor(folder, config, words, image_size).save_pretrained(folder)
    return folder
