"""Frozen SAM teachers: ``segment_anything``'s ViT-B/L/H, RepViT-SAM, or a custom ViT.

Every teacher is a ``segment_anything.modeling.Sam`` in eval mode with gradients
off. Weights load only through :mod:`repvit_plugins.weights.zoo` and
:mod:`repvit_plugins.weights.checkpoint_io` (``weights_only=True``, strict key checks). When the embeddings come
from the cache, build it with ``with_encoder=False``: only the prompt encoder and mask
decoder are built and loaded (about 4M parameters instead of 636M for ViT-H).
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Mapping

import torch
from torch import nn

from ..models.sam_parts import assemble_sam, load_sam_checkpoint
from ..models.sam_registry import build_encoder, repvit_sam_name, sam_model_names

if TYPE_CHECKING:  # segment_anything ships no types: mypy sees its classes as Any
    from segment_anything.modeling import Sam

__all__ = ["TEACHER_TYPES", "build_teacher", "teacher_name", "load_prompt_decoder_state"]

_VIT_ALIASES = {"vit_b": "sam_vit_b", "vit_l": "sam_vit_l", "vit_h": "sam_vit_h"}
TEACHER_TYPES = (*_VIT_ALIASES, "repvit_sam", "vit", *(n for n in sam_model_names() if n != "repvit_sam"))
"""``vit_b`` / ``vit_l`` / ``vit_h`` (SAM), ``repvit_sam`` (any RepViT arch), ``vit`` (custom ``vit=dict(...)``), and
every other :data:`~repvit_plugins.models.sam_registry.SAM_MODELS` name (e.g. ``mobile_sam``)."""

_DECODER_PREFIXES = ("prompt_encoder.", "mask_decoder.")


class _NoImageEncoder(nn.Module):
    """Stands in for the image encoder of a teacher whose embeddings come from the cache."""

    def __init__(self, img_size: int):
        super().__init__()
        self.img_size = img_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError(
            "this teacher was built without its image encoder (with_encoder=False), so it cannot embed images. "
            "Give the dataset a cache_dir with precomputed embeddings (tools/precompute_sam_embeddings.py), "
            "or build the teacher with with_encoder=True."
        )


def teacher_name(model_type: str, checkpoint: str | os.PathLike | None = None, arch: str = "m2_3",
                 vit: Mapping | None = None) -> str:
    """A short description of a teacher, stored in the embedding cache's ``meta.json``."""
    name = f"repvit_sam_{arch}" if model_type == "repvit_sam" else model_type
    if vit:
        name += "(" + ",".join(f"{k}={v}" for k, v in sorted(vit.items())) + ")"
    file = os.path.basename(str(checkpoint)) if checkpoint else "random"
    return f"{name}:{file.removesuffix('.pth').removesuffix('.pt')}"


def load_prompt_decoder_state(checkpoint: str | os.PathLike | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``prompt_encoder.*`` and ``mask_decoder.*`` tensors of a flat SAM / RepViT-SAM checkpoint."""
    from ..weights.checkpoint_io import CheckpointError, extract_state_dict, load_checkpoint_file
    from ..weights.zoo import resolve_checkpoint

    if isinstance(checkpoint, Mapping):
        state = extract_state_dict(dict(checkpoint))
    else:
        state = extract_state_dict(load_checkpoint_file(resolve_checkpoint(checkpoint)))
    found = {k: v for k, v in state.items() if k.startswith(_DECODER_PREFIXES)}
    if not found:
        raise CheckpointError(
            f"{checkpoint} holds no prompt_encoder.* / mask_decoder.* weights; pass the teacher's full SAM "
            "checkpoint (e.g. sam_vit_h_4b8939.pth or repvit_sam.pt), not an image-encoder-only file."
        )
    return found


def build_teacher(model_type: str = "vit_h", checkpoint: str | os.PathLike | None = None, img_size: int = 1024,
                  with_encoder: bool = True, arch: str = "m2_3", vit: Mapping | None = None) -> Sam:
    """A frozen ``segment_anything`` ``Sam`` to distill from.

    Args:
        model_type: one of :data:`TEACHER_TYPES`.
        checkpoint: path or zoo name of the flat SAM checkpoint (``'sam_vit_h_4b8939'``,
            ``'repvit_sam'``, a file); ``None`` keeps random weights (tests only).
        img_size: padded input side; the student must use the same (embedding grid ``img_size/16``).
            SAM's ViTs are trained at 1024.
        with_encoder: build the image encoder (needed to precompute embeddings or distill online).
        arch: RepViT arch of a ``repvit_sam`` teacher.
        vit: ``ImageEncoderViT`` settings for ``model_type='vit'`` (``embed_dim``, ``depth``,
            ``num_heads``, ``global_attn_indexes``, ``window_size``, ...), or overrides of a preset.
    """
    if model_type not in TEACHER_TYPES:
        raise ValueError(f"unknown teacher {model_type!r}; choose one of {', '.join(TEACHER_TYPES)}")
    if model_type == "vit" and not vit:
        raise ValueError("model_type='vit' needs vit=dict(embed_dim=..., depth=..., num_heads=...)")
    name = repvit_sam_name(arch) if model_type == "repvit_sam" else _VIT_ALIASES.get(model_type, model_type)
    if not with_encoder:
        encoder: nn.Module = _NoImageEncoder(img_size)
    elif model_type == "vit":
        encoder = build_encoder("sam_vit_b", img_size, **dict(vit or {}))
    else:
        encoder = build_encoder(name, img_size, **dict(vit or {}))
    sam = assemble_sam(encoder, img_size)
    if checkpoint is not None:
        if with_encoder:
            load_sam_checkpoint(sam, checkpoint)
        else:
            from ..weights.checkpoint_io import strict_load

            own = nn.ModuleDict(dict(prompt_encoder=sam.prompt_encoder, mask_decoder=sam.mask_decoder))
            strict_load(own, load_prompt_decoder_state(checkpoint), what=str(checkpoint))
    sam.requires_grad_(False)
    return sam.eval()
