"""A tiny random OmDet-Turbo (transformers) for offline tests.

The vision backbone is timm's real Swin-T layout (OmDet's config takes no smaller timm Swin: it overwrites
``backbone_kwargs``), so loading it from a folder meets the same meta-device ``attn_mask`` buffers as the hub
checkpoint; the text encoder, encoder and decoder are tiny, and images are resized to 64x64. The box heads,
zero at initialization (every box would be its anchor), are given random weights so boxes differ in size and
overlap. The CLIP tokenizer is built offline from the 256 byte characters with no merges::

    model_dir = make_tiny_omdet_turbo(tmp_path)
    detector = OmDetTurboDetector(str(model_dir))
    found = detector.detect(image, "cat, dog", **OMDET_LOW_THRESHOLDS)
"""
from __future__ import annotations

from pathlib import Path

import torch

OMDET_LOW_THRESHOLDS = {"box_threshold": 0.0}
"""A score threshold that keeps every candidate of a random model (then NMS and ``max_detections`` apply)."""

TINY_OMDET_IMAGE_SIZE = 64


def make_tiny_omdet_turbo(tmp_dir: str | Path, *, seed: int = 0, num_queries: int = 30) -> Path:
    """Save a tiny random ``OmDetTurboForObjectDetection`` and its processor; return the folder.

    Loadable offline with ``OmDetTurboDetector(str(folder))`` or ``build_detector('hf', model=str(folder))``.
    """
    from transformers import (
        CLIPTextConfig,
        DetrImageProcessor,
        OmDetTurboConfig,
        OmDetTurboForObjectDetection,
        OmDetTurboProcessor,
    )

    from repvit_plugins.grounding.random_model import clip_tokenizer

    folder = Path(tmp_dir) / "tiny-omdet-turbo"
    tokenizer = clip_tokenizer(folder / "tokenizer", words=())  # the byte characters, no merges
    vocab_size = len(tokenizer)
    text = CLIPTextConfig(vocab_size=vocab_size, hidden_size=48, intermediate_size=48, num_hidden_layers=1,
                          num_attention_heads=2, max_position_embeddings=77, bos_token_id=vocab_size - 2,
                          eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1)
    # class_embed_dim must differ from decoder_hidden_dim (transformers 4.57 defines task_project only then)
    config = OmDetTurboConfig(
        text_config=text, image_size=TINY_OMDET_IMAGE_SIZE, text_projection_in_dim=48, text_projection_out_dim=48,
        class_embed_dim=48, task_encoder_hidden_dim=32, num_queries=num_queries, vision_features_channels=[32, 32, 32],
        encoder_hidden_dim=32, encoder_attention_heads=2, encoder_dim_feedforward=32, decoder_hidden_dim=32,
        decoder_num_heads=2, decoder_num_layers=2, decoder_dim_feedforward=32, decoder_num_points=2,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = OmDetTurboForObjectDetection(config).eval()
        with torch.no_grad():
            for head in (model.decoder.encoder_bbox_head, *model.decoder.decoder_bbox_head):
                head.layers[-1].weight.normal_(std=0.05)
                head.layers[-1].bias.normal_(std=1.0)
    size = {"height": TINY_OMDET_IMAGE_SIZE, "width": TINY_OMDET_IMAGE_SIZE}
    processor = OmDetTurboProcessor(image_processor=DetrImageProcessor(size=size), tokenizer=tokenizer)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
