"""Small RepViT-SAM models and a plain segment_anything twin for the SAM tests."""
from __future__ import annotations

import copy

import numpy as np
import torch

from repvit_plugins.models import build_repvit_sam
from repvit_plugins.models.repvit_sam import RepViTSamEncoder

from .conftest import randomize_batchnorm

SMALL = {"arch": "m0_6", "img_size": 256}  # 16x16 embedding: the decoder's maths at a quarter of the cost


def small_sam(seed: int = 0, **kwargs):
    """A random RepViT-SAM with trained-looking BatchNorms and non-trivial decoder weights."""
    torch.manual_seed(seed)
    sam = build_repvit_sam(**{**SMALL, **kwargs})
    randomize_batchnorm(sam, seed)
    with torch.no_grad():  # LayerNorm / embeddings start at constants: make them matter
        for name, param in sam.named_parameters():
            if not name.startswith("image_encoder.features") and param.dim() == 1:
                param.add_(torch.randn_like(param) * 0.1)
    return sam.eval()


def plain_sam_twin(sam):
    """The same weights in a ``Sam`` assembled here from segment_anything's own classes."""
    from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    size = sam.image_encoder.img_size
    grid = size // 16
    encoder = RepViTSamEncoder(sam.image_encoder.arch_name, img_size=size)
    twin = Sam(
        image_encoder=encoder,
        prompt_encoder=PromptEncoder(embed_dim=256, image_embedding_size=(grid, grid),
                                     input_image_size=(size, size), mask_in_chans=16),
        mask_decoder=MaskDecoder(num_multimask_outputs=3, transformer=TwoWayTransformer(
            depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8), transformer_dim=256, iou_head_depth=3,
            iou_head_hidden_dim=256),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    twin.load_state_dict(copy.deepcopy(sam.state_dict()), strict=True)
    return twin.eval()


def synthetic_image(h: int = 200, w: int = 300, seed: int = 0) -> np.ndarray:
    """A smooth synthetic RGB image with a few shapes (uint8)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (h + w)], axis=-1)
    image[(yy - h / 3) ** 2 + (xx - w / 3) ** 2 < (min(h, w) / 5) ** 2] = (220, 40, 40)
    image[h // 2:h - 10, w // 2:w - 20] = (30, 200, 60)
    return (image + rng.normal(0, 5, image.shape)).clip(0, 255).astype(np.uint8)
