"""RepViT-SAM: the core RepViT as SAM's image encoder, and a builder of a ``segment_anything`` ``Sam``.

The encoder is the same :class:`~repvit_plugins.models.repvit.RepViT` as the
classifier, configured with the last downsample at stride 1 and no head, plus
SAM's neck (Conv1x1 -> LayerNorm2d -> Conv3x3 -> LayerNorm2d). Module names match
the official ``repvit_sam.pt`` (``image_encoder.features.N...``,
``image_encoder.neck.{0,1,2,3}...``), so it loads with strict key checking.
Prompt encoder, mask decoder and transformer come from ``segment_anything``.
"""
from __future__ import annotations

import os
from typing import Mapping

import torch
from torch import nn

from .repvit import RepViT, canonical_arch
from .sam_parts import EMBEDDING_STRIDE, SAM_EMBED_DIM, assemble_sam, load_sam_checkpoint

__all__ = ["RepViTSamEncoder", "build_repvit_sam", "load_sam_checkpoint"]

ENCODER_STRIDE = EMBEDDING_STRIDE  # stem 4 x 2 x 2 x 1 (last downsample at stride 1)


class RepViTSamEncoder(nn.Module):
    """RepViT trunk (``features``, last downsample at stride 1) + SAM neck (``neck``).

    Args:
        arch: RepViT variant (``'m2_3'`` for the official RepViT-SAM; smaller ones for students).
        img_size: side of the square padded input SAM feeds the encoder (read by ``SamPredictor``).
        out_chans: embedding width the prompt encoder and mask decoder expect.
    """

    def __init__(self, arch: str = "m2_3", img_size: int = 1024, out_chans: int = SAM_EMBED_DIM):
        super().__init__()
        from segment_anything.modeling.common import LayerNorm2d

        if img_size % ENCODER_STRIDE:
            raise ValueError(f"img_size must be a multiple of {ENCODER_STRIDE}, got {img_size}")
        trunk = RepViT(arch, num_classes=0, last_stride=1)
        self.arch_name = trunk.arch_name
        self.arch = trunk.arch
        self.img_size = img_size
        self.features = trunk.features
        width = trunk.num_channels
        self.neck = nn.Sequential(
            nn.Conv2d(width, out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    @property
    def embedding_size(self) -> int:
        """Side of the embedding grid (64 for a 1024 input)."""
        return self.img_size // ENCODER_STRIDE

    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """The RepViT features before the neck (``B x C x H/16 x W/16``)."""
        for block in self.features:
            x = block(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neck(self.forward_trunk(x))


def build_repvit_sam(checkpoint: str | os.PathLike | Mapping[str, torch.Tensor] | None = None,
                     device: str | torch.device = "cpu", arch: str = "m2_3", img_size: int = 1024):
    """A ``segment_anything.modeling.Sam`` with a RepViT image encoder, in eval mode.

    Args:
        checkpoint: ``None`` (random weights), a file in the official flat layout
            (``repvit_sam.pt``), the zoo name ``'repvit_sam'`` or a state dict.
        device: where the model lives.
        arch: encoder variant; ``'m2_3'`` is the official RepViT-SAM.
        img_size: padded input side (1024 as SAM; smaller sizes give a ``img_size/16`` grid).
    """
    sam = assemble_sam(RepViTSamEncoder(canonical_arch(arch), img_size=img_size), img_size)
    if checkpoint is not None:
        load_sam_checkpoint(sam, checkpoint)
    return sam.to(device).eval()
