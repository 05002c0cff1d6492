"""Text prompts for Grounding DINO: parse, tokenize in class-aligned chunks, map token scores to classes.

A prompt is a caption (``"a cat. a dog."``) or a list of class names. It becomes
an ordered list of classes; the model sees the caption ``"a cat . a dog ."``.
Every class owns a span of tokens, so a query's class is found by token-span
membership (never a word piece such as ``##hy``, never ``None``), and prompts
longer than the text encoder's limit are split into chunks of whole classes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

import torch

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "PromptChunk",
    "build_caption",
    "check_class_lengths",
    "class_scores",
    "class_text",
    "parse_prompt",
    "score_queries",
    "strip_article",
    "tokenize_prompt",
]

DEFAULT_MAX_TOKENS = 256
"""Grounding DINO's text limit (``max_text_len``), special tokens included."""

_SEPARATORS = re.compile(r"[.?\n;]")  # '.' and '?' are Grounding DINO's phrase separators
_ARTICLE = re.compile(r"^(a|an|the)\s+", re.IGNORECASE)


def strip_article(name: str) -> str:
    """``name`` stripped of surrounding spaces and a leading English article (``"a cat"`` -> ``"cat"``), case kept."""
    return _ARTICLE.sub("", name.strip())


def class_text(name: str) -> str:
    """The text the model sees for a class: lower case, separators removed, single spaces."""
    return " ".join(_SEPARATORS.sub(" ", name).lower().split())


def parse_prompt(prompt: str | Sequence[str]) -> list[str]:
    """Class names (display form, stripped) of a caption or a list of names, in order, without duplicates.

    A caption is split at ``.``, ``?``, ``;`` and new lines; a text without ``.`` is also
    split at commas, so ``"dog, cat"`` is two classes while ``"a dog, brown. a cat."``
    keeps its comma. This is the one rule of the CLI, the library and the Gradio demo.
    Duplicates are found on :func:`class_text` (case-insensitive); the first spelling
    is kept for display.

    Raises:
        ValueError: the prompt holds no class name.
    """
    if isinstance(prompt, str):
        pieces = _SEPARATORS.split(prompt if "." in prompt else prompt.replace(",", "."))
    elif isinstance(prompt, Sequence) and all(isinstance(p, str) for p in prompt):
        pieces = list(prompt)
    else:
        raise ValueError(f"a prompt is a string or a list of strings, got {type(prompt).__name__}")
    names: dict[str, str] = {}
    for piece in pieces:
        display = " ".join(piece.split())
        key = class_text(display)
        if key and key not in names:
            names[key] = display
    if not names:
        raise ValueError(f"the prompt {prompt!r} names no class; write e.g. 'a dog. a frisbee.' "
                         "or pass a list of class names.")
    return list(names.values())


def build_caption(names: Sequence[str]) -> str:
    """The caption the model sees: ``["a cat", "a dog"] -> "a cat . a dog ."``."""
    return " ".join(f"{class_text(n)} ." for n in names)


@dataclass(frozen=True)
class PromptChunk:
    """Classes that fit the text encoder together.

    Attributes:
        names: the classes' names.
        class_ids: the classes' indices in the full class list.
        caption: the caption of these classes (:func:`build_caption`).
        input_ids: token ids of ``caption`` with ``[CLS]`` / ``[SEP]``.
        spans: per class, its tokens ``input_ids[start:end]``.
    """

    names: tuple[str, ...]
    class_ids: tuple[int, ...]
    caption: str
    input_ids: tuple[int, ...]
    spans: tuple[tuple[int, int], ...]


def _token_ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _make_chunk(names: Sequence[str], class_ids: Sequence[int], pieces: Sequence[list[int]],
                tokenizer: Any) -> PromptChunk:
    dot = tokenizer.convert_tokens_to_ids(".")
    ids, spans = [tokenizer.cls_token_id], []
    for piece in pieces:
        spans.append((len(ids), len(ids) + len(piece)))
        ids += piece + [dot]
    ids.append(tokenizer.sep_token_id)
    return PromptChunk(tuple(names), tuple(class_ids), build_caption(names), tuple(ids), tuple(spans))


def check_class_lengths(names: Sequence[str], tokenizer: Any, limit: int, encoder: str = "the text encoder's") -> None:
    """Raise ``ValueError`` naming the first class whose tokens (special ones included) exceed ``limit``: the rule of
    the detectors that encode each class as its own text (OmDet-Turbo, OWLv2), applied to the names they encode."""
    for name in names:
        length = len(tokenizer(name)["input_ids"])
        if length > limit:
            raise ValueError(f"the class name {name!r} is {length} tokens long, more than {encoder} limit of {limit} "
                             "tokens per class allows; shorten it")


def tokenize_prompt(names: Sequence[str], tokenizer: Any, max_tokens: int = DEFAULT_MAX_TOKENS) -> list[PromptChunk]:
    """Split ``names`` into chunks of whole classes whose captions fit ``max_tokens`` tokens.

    ``tokenizer`` is a BERT tokenizer (slow or fast). Each class costs its tokens plus
    one for the ``.`` after it; each chunk two more for ``[CLS]`` and ``[SEP]``.

    Raises:
        ValueError: a single class name is longer than the limit allows.
    """
    chunks: list[PromptChunk] = []
    current: list[int] = []
    pieces: list[list[int]] = []
    used = 2
    for index, name in enumerate(names):
        piece = _token_ids(tokenizer, class_text(name))
        if not piece:
            raise ValueError(f"the class name {name!r} has no tokens; remove it from the prompt")
        cost = len(piece) + 1
        if cost + 2 > max_tokens:
            raise ValueError(f"the class name {name!r} is {len(piece)} tokens long, more than the text encoder's "
                             f"limit of {max_tokens} tokens allows; shorten it")
        if used + cost > max_tokens:
            chunks.append(_make_chunk([names[i] for i in current], current, pieces, tokenizer))
            current, pieces, used = [], [], 2
        current.append(index)
        pieces.append(piece)
        used += cost
    if current:
        chunks.append(_make_chunk([names[i] for i in current], current, pieces, tokenizer))
    return chunks


def class_scores(probs: torch.Tensor, spans: Sequence[tuple[int, int]]) -> torch.Tensor:
    """Per class, the highest token probability in its span: ``(..., T) -> (..., C)``."""
    return torch.stack([probs[..., start:end].amax(dim=-1) for start, end in spans], dim=-1)


def score_queries(logits: torch.Tensor, spans: Sequence[tuple[int, int]], box_threshold: float,
                  text_threshold: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Score and classify a model's queries from its token logits.

    A query's score for a class is its highest sigmoid probability over the class's
    tokens; its class is the best-scoring one and its confidence that score. The
    query's positive tokens (probability above ``text_threshold``) therefore always
    include a token of its class; a query with no positive class token has no phrase
    and is dropped, as is one with confidence not above ``box_threshold``.

    Args:
        logits: ``(Q, T)`` token logits (``-inf`` past the text) of one image.
        spans: token spans of the classes, as in :class:`PromptChunk`.

    Returns:
        ``(kept query indices, confidences, class indices within spans)``.
    """
    probs = class_scores(logits.float().sigmoid(), spans)
    confidence, labels = probs.max(dim=-1)
    keep = torch.nonzero((confidence > box_threshold) & (confidence > text_threshold)).flatten()
    return keep, confidence[keep], labels[keep]
