"""What every SAM here shares: embedding width, pixel normalisation, segment_anything's prompt side, strict loading."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Mapping

import torch
from torch import nn

if TYPE_CHECKING:  # segment_anything ships no types: mypy sees its classes as Any
    from segment_anything.modeling import Sam

__all__ = ["EMBEDDING_STRIDE", "SAM_EMBED_DIM", "SAM_PIXEL_MEAN", "SAM_PIXEL_STD", "assemble_sam",
           "encoder_input_size", "load_sam_checkpoint"]

SAM_EMBED_DIM = 256
SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)
EMBEDDING_STRIDE = 16
"""Input pixels per embedding cell: every encoder here maps a 1024 input to a 64 x 64 embedding."""


def assemble_sam(encoder: nn.Module, img_size: int, pixel_mean=SAM_PIXEL_MEAN, pixel_std=SAM_PIXEL_STD) -> Sam:
    """``encoder`` + segment_anything's prompt encoder and mask decoder, as a ``Sam``."""
    from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    grid = img_size // EMBEDDING_STRIDE
    return Sam(
        image_encoder=encoder,
        prompt_encoder=PromptEncoder(embed_dim=SAM_EMBED_DIM, image_embedding_size=(grid, grid),
                                     input_image_size=(img_size, img_size), mask_in_chans=16),
        mask_decoder=MaskDecoder(num_multimask_outputs=3, transformer_dim=SAM_EMBED_DIM, iou_head_depth=3,
                                 iou_head_hidden_dim=256,
                                 transformer=TwoWayTransformer(depth=2, embedding_dim=SAM_EMBED_DIM, mlp_dim=2048,
                                                               num_heads=8)),
        pixel_mean=list(pixel_mean),
        pixel_std=list(pixel_std),
    )


def encoder_input_size(encoder: nn.Module) -> int:
    """The side of the square input an image encoder sees: its ``input_size`` (EfficientViT-SAM L: 512) or
    ``img_size`` (the prompt frame, 1024 for every other entry)."""
    size = getattr(encoder, "input_size", None) or getattr(encoder, "img_size", None)
    if size is None:
        raise AttributeError(f"{type(encoder).__name__} has neither input_size nor img_size")
    return int(size)


def load_sam_checkpoint(sam: Sam, checkpoint: str | os.PathLike | Mapping[str, torch.Tensor]) -> Sam:
    """Load a flat SAM state dict (path, zoo name or dict) with strict key checking.

    Raises :class:`~repvit_plugins.weights.checkpoint_io.CheckpointError` naming missing,
    unexpected or mis-shaped keys.
    """
    from ..weights.checkpoint_io import extract_state_dict, load_checkpoint_file, strict_load
    from ..weights.zoo import resolve_checkpoint

    if isinstance(checkpoint, Mapping):
        state, what = extract_state_dict(dict(checkpoint)), "state dict"
    else:
        path = resolve_checkpoint(checkpoint)
        state, what = extract_state_dict(load_checkpoint_file(path)), str(path)
    strict_load(sam, state, what=what)
    return sam
