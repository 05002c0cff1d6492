"""Refuse a prompt the detector's text encoder cannot take, before any model loads.

Only the tokenizer is read (seconds), so a class name that is too long fails the whole command at once
instead of failing once per image after minutes of model loading.
"""
from __future__ import annotations

import json
from typing import Sequence

from ..options import ModelOptions
from .prompts import DEFAULT_MAX_TOKENS, check_class_lengths, tokenize_prompt

__all__ = ["CLIP_MAX_TOKENS", "check_prompt_fits"]

CLIP_MAX_TOKENS = 77
"""CLIP's text context (OmDet-Turbo): per class, start and end tokens included (OWLv2's queries take 16)."""


def _config(source: str) -> dict:
    """The model's ``config.json`` (folder or Hugging Face cache), or ``{}``."""
    from .detector_zoo import hf_config_path

    path = hf_config_path(source)
    return json.loads(path.read_text(encoding="utf-8")) if path is not None else {}


def check_prompt_fits(models: ModelOptions, names: Sequence[str]) -> None:
    """Raise ``ValueError`` naming the class when ``names`` do not fit the text encoder of ``models``' detector.

    Checked for the transformers families, whose tokenizer ships with the model; the other backends check
    when they run. Does nothing when the tokenizer is not on disk (the weights check reports that).
    """
    model = models.resolved_detector_model
    if models.detector != "hf" or str(model or "").endswith(".onnx"):
        return
    from .detector_zoo import hf_family, resolve_detector_model

    source = resolve_detector_model(model)
    family = hf_family(source)
    if family is None:  # not on disk: the weights check reports it
        return
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError):
        return
    config = _config(source)
    if family in ("grounding-dino", "mm-grounding-dino"):  # raises for a class longer than the limit
        tokenize_prompt(names, tokenizer, int(config.get("max_text_len", DEFAULT_MAX_TOKENS)))
        return
    check_class_lengths(names, tokenizer, int(config.get("text_config", {}).get("max_position_embeddings",
                                                                               CLIP_MAX_TOKENS)))
