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

__all__ = ["EdgeSamEncoder", "RepViTSamEncoder", "build_repvit_sam", "load_sam_checkpoint", "sam_neck"]

ENCODER_STRIDE = EMBEDDING_STRIDE  # stem 4 x 2 x 2 x 1 (last downsample at stride 1)


def sam_neck(in_chans: int, out_chans: int = SAM_EMBED_DIM) -> nn.Sequential:
    """SAM's neck (keys ``0..3``): Conv1x1 -> LayerNorm2d -> Conv3x3 -> LayerNorm2d, without biases."""
    from segment_anything.modeling.common import LayerNorm2d

    return nn.Sequential(
        nn.Conv2d(in_chans, out_chans, kernel_size=1, bias=False),
        LayerNorm2d(out_chans),
        nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
        LayerNorm2d(out_chans),
    )


class RepViTSamEncoder(nn.Module):
    """RepViT trunk (``features``, last downsample at stride 1) + SAM neck (``neck``).

    Args:
        arch: RepViT variant (``'m2_3'`` for the official RepViT-SAM; smaller ones for students).
        img_size: side of the square padded input SAM feeds the encoder (read by ``SamPredictor``).
        out_chans: embedding width the prompt encoder and mask decoder expect.
    """

    def __init__(self, arch: str = "m2_3", img_size: int = 1024, out_chans: int = SAM_EMBED_DIM):
        super().__init__()
        if img_size % ENCODER_STRIDE:
            raise ValueError(f"img_size must be a multiple of {ENCODER_STRIDE}, got {img_size}")
        trunk = RepViT(arch, num_classes=0, last_stride=1)
        self.arch_name = trunk.arch_name
        self.arch = trunk.arch
        self.img_size = img_size
        self.features = trunk.features
        self.neck = sam_neck(trunk.num_channels, out_chans)

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


class _ProjectThenUpsample(nn.Module):
    """Conv1x1 then x2 interpolation; ``op_list`` keeps EdgeSAM's key names (``op_list.0.weight``)."""

    def __init__(self, in_chans: int, out_chans: int, mode: str = "bicubic"):
        super().__init__()
        self.op_list = nn.ModuleList([nn.Conv2d(in_chans, out_chans, kernel_size=1, bias=False)])
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(self.op_list[0](x), scale_factor=2, mode=self.mode, align_corners=False)


class EdgeSamEncoder(nn.Module):
    """EdgeSAM's image encoder on the project's RepViT core: the paper's first-version RepViT-M1 (every
    downsample at stride 2), its stride-16 and stride-32 stage outputs projected to 256 channels and summed
    (the stride-32 one upsampled x2), then SAM's neck. Module names follow EdgeSAM's checkpoints
    (``features.N...``, ``fuse_stage2``, ``fuse_stage3.op_list.0``, ``neck.{0..3}``).
    """

    def __init__(self, arch: str = "m1", img_size: int = 1024, out_chans: int = SAM_EMBED_DIM,
                 upsample_mode: str = "bicubic"):
        super().__init__()
        if img_size % 32:
            raise ValueError(f"img_size must be a multiple of 32, got {img_size}")
        trunk = RepViT(arch, num_classes=0)
        self.arch_name, self.arch, self.img_size = trunk.arch_name, trunk.arch, img_size
        self.features = trunk.features
        self._stage3_end = trunk.arch.stage_ends[2]
        channels = trunk.arch.channels
        self.fuse_stage2 = nn.Conv2d(channels[2], out_chans, kernel_size=1, bias=False)
        self.fuse_stage3 = _ProjectThenUpsample(channels[3], out_chans, upsample_mode)
        self.neck = sam_neck(out_chans, out_chans)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index, block in enumerate(self.features):
            x = block(x)
            if index == self._stage3_end:
                stride16 = x
        return self.neck(self.fuse_stage2(stride16) + self.fuse_stage3(x))


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
