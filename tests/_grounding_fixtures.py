"""Tiny random open-vocabulary detectors for offline tests (Grounding DINO's three backends, MM-Grounding-DINO, OWLv2).

Both share a tiny BERT vocabulary that puts ``[CLS]``, ``[SEP]``, ``.`` and ``?`` at
bert-base-uncased's ids 101, 102, 1012 and 1029, which Grounding DINO hard-codes.

With random weights the detections are arbitrary; ``LOW_THRESHOLDS`` makes every
query a candidate, so a pipeline test always gets boxes::

    model_dir = make_tiny_hf_grounding_dino(tmp_path)
    detector = build_detector("hf", model=str(model_dir))
    found = detector.detect(image, "a dog. a cat.", **LOW_THRESHOLDS)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

LOW_THRESHOLDS = {"box_threshold": 0.0, "text_threshold": 0.0}
"""Thresholds that keep every query of a random model (then NMS and ``max_detections`` apply)."""

TINY_IMAGE_SIZE = {"shortest_edge": 64, "longest_edge": 96}

# d_model 64, not 32: GroupNorm(32, d_model) needs 2 channels per group when a feature map is 1x1
# whole words and word pieces the tests use; anything else becomes [UNK]
TINY_WORDS = [
    "a", "an", "the", "of", "with", "and", "cat", "dog", "dogs", "person", "man", "woman", "car", "bus", "bike",
    "frisbee", "ball", "hat", "red", "blue", "green", "big", "small", "tree", "house", "bird", "horse", "cup",
    "chair", "table", "bottle", "apple", "banana", "sky", "grass", "road", "st", "bernard", "sho", "##hy", "##s",
    "##ing", "##ed", "##er", "fr", "##is", "##bee", "x", "y", "z",
]


def write_tiny_vocab(folder: str | Path) -> Path:
    """A BERT ``vocab.txt`` with the special tokens at bert-base-uncased's ids."""
    fixed = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]", 1012: ".", 1029: "?"}
    tokens = [fixed.get(i, f"[unused{i}]") for i in range(1030)] + TINY_WORDS
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "vocab.txt"
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return path


def tiny_tokenizer(folder: str | Path):
    """A slow ``BertTokenizer`` on the tiny vocabulary (written into ``folder``)."""
    from transformers import BertTokenizer

    return BertTokenizer(vocab_file=str(write_tiny_vocab(folder)))


def _tiny_bert_config(vocab_size: int):
    from transformers import BertConfig

    return BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=37, max_position_embeddings=512)


def _save_tiny_hf_grounding_dino(folder: Path, config_class: Any, model_class: Any, *, seed: int,
                                 num_queries: int) -> Path:
    """A tiny random transformers Grounding DINO of ``model_class`` (model + processor) saved into ``folder``."""
    from transformers import GroundingDinoImageProcessor, GroundingDinoProcessor, SwinConfig

    tokenizer = tiny_tokenizer(folder / "vocab")
    config = config_class(
        backbone_config=SwinConfig(image_size=64, embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                                   window_size=2, out_indices=[2, 3, 4]),
        text_config=_tiny_bert_config(tokenizer.vocab_size),
        d_model=64, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        encoder_attention_heads=2, decoder_attention_heads=2, num_queries=num_queries,
        encoder_n_points=2, decoder_n_points=2, max_text_len=256,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = model_class(config).eval()
    processor = GroundingDinoProcessor(image_processor=GroundingDinoImageProcessor(size=dict(TINY_IMAGE_SIZE)),
                                       tokenizer=tokenizer)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def make_tiny_hf_grounding_dino(tmp_dir: str | Path, *, seed: int = 0, num_queries: int = 30) -> Path:
    """Save a tiny random transformers Grounding DINO (model + processor) and return its folder.

    Loadable offline with ``build_detector('hf', model=str(folder))``. Images are resized to a
    shortest edge of 64 pixels (longest at most 96).
    """
    from transformers import GroundingDinoConfig, GroundingDinoForObjectDetection

    return _save_tiny_hf_grounding_dino(Path(tmp_dir) / "tiny-grounding-dino-hf", GroundingDinoConfig,
                                        GroundingDinoForObjectDetection, seed=seed, num_queries=num_queries)


def make_tiny_hf_mm_grounding_dino(tmp_dir: str | Path, *, seed: int = 0, num_queries: int = 30) -> Path:
    """The same tiny model as :func:`make_tiny_hf_grounding_dino` as an MM-Grounding-DINO (``model_type``
    ``mm-grounding-dino``, the class LLMDet checkpoints use too): per-layer heads, a bias in the contrastive head."""
    from transformers import MMGroundingDinoConfig, MMGroundingDinoForObjectDetection

    return _save_tiny_hf_grounding_dino(Path(tmp_dir) / "tiny-mm-grounding-dino-hf", MMGroundingDinoConfig,
                                        MMGroundingDinoForObjectDetection, seed=seed, num_queries=num_queries)


def make_tiny_owlv2(tmp_dir: str | Path, *, seed: int = 0) -> Path:
    """Save a tiny random transformers OWLv2 (model + processor) and return its folder.

    Loadable offline with ``Owlv2Detector(str(folder))``: a 64x64 input of 8x8 patches (64 box
    candidates per image), text queries of at most 16 character tokens.
    """
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor

    from repvit_plugins.grounding.random_model import clip_tokenizer

    folder = Path(tmp_dir) / "tiny-owlv2"
    tokenizer = clip_tokenizer(folder / "vocab", words=(), max_length=16)  # one token per character
    layers = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2)
    config = Owlv2Config(text_config=dict(vocab_size=len(tokenizer), max_position_embeddings=16, **layers),
                         vision_config=dict(image_size=64, patch_size=8, **layers), projection_dim=32)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Owlv2ForObjectDetection(config).eval()
        # small heads: boxes near their patch (not degenerate) and scores spread around 0.5 (not saturated)
        for layer in (model.box_head.dense2, model.class_head.logit_shift, model.class_head.logit_scale):
            torch.nn.init.normal_(layer.weight, std=0.05)
            torch.nn.init.zeros_(layer.bias)
    processor = Owlv2Processor(image_processor=Owlv2ImageProcessor(size={"height": 64, "width": 64}),
                               tokenizer=tokenizer)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def make_tiny_bert(folder: str | Path, *, seed: int = 0) -> Path:
    """A tiny random BERT (weights + tokenizer files) saved in ``folder``, usable as a local text encoder."""
    from transformers import BertModel

    folder = Path(folder)
    tokenizer = tiny_tokenizer(folder)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        BertModel(_tiny_bert_config(tokenizer.vocab_size)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# groundingdino-py hard-codes d_model 256 for its text position embeddings, and the SwinT backbone's size
_ORIGINAL_OVERRIDES = dict(enc_layers=1, dec_layers=2, dim_feedforward=64, num_queries=30, enc_n_points=2,
                           dec_n_points=2, use_checkpoint=False, use_transformer_ckpt=False)


def make_tiny_original_grounding_dino(tmp_dir: str | Path, *, seed: int = 0) -> dict[str, Any]:
    """A small random groundingdino-py model: returns ``build_detector('original', **kwargs)`` keyword arguments.

    The official SwinT OGC config with one encoder / two decoder layers and 30 queries, a tiny
    local BERT, and a checkpoint file (``{'model': state_dict}``) written into ``tmp_dir``.
    """
    import contextlib
    import io
    import warnings

    from groundingdino.models import build_model
    from groundingdino.util.slconfig import SLConfig

    from repvit_plugins.grounding.original_backend import default_config

    root = Path(tmp_dir) / "tiny-grounding-dino-original"
    bert = make_tiny_bert(root / "bert", seed=seed)
    overrides = {**_ORIGINAL_OVERRIDES, "text_encoder_type": str(bert)}
    config = root / "GroundingDINO_tiny.py"
    config.write_text(default_config().read_text() + "\n" + "\n".join(f"{k} = {v!r}" for k, v in overrides.items())
                      + "\n", encoding="utf-8")
    args = SLConfig.fromfile(str(config))
    args.device = "cpu"
    with torch.random.fork_rng(), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(seed)
        model = build_model(args)
    checkpoint = root / "groundingdino_tiny.pth"
    torch.save({"model": model.state_dict()}, checkpoint)
    return {"model": str(config), "checkpoint": str(checkpoint), "text_encoder": str(bert),
            "image_size": 64, "max_size": 96}


def make_tiny_mmdet_grounding_dino(tmp_dir: str | Path) -> dict[str, Any]:
    """A small random mmdet 3.x Grounding DINO config: returns ``build_detector('mmdet', **kwargs)`` arguments.

    Inherits mmdet's SwinT pretraining config and shrinks the backbone (Swin, 32 channels), the layers
    (1 encoder, 2 decoder), the queries (30) and the test resize (64 / 96 pixels); the text width stays
    256, which mmdet hard-codes. No checkpoint: the model keeps its random initialization.
    """
    import mmdet

    base = Path(mmdet.__file__).parent / ".mim" / "configs" / "grounding_dino" / \
        "grounding_dino_swin-t_pretrain_obj365_goldg_cap4m.py"
    root = Path(tmp_dir) / "tiny-grounding-dino-mmdet"
    bert = make_tiny_bert(root / "bert")
    config = root / "grounding_dino_tiny.py"
    config.write_text(f"""_base_ = [{str(base)!r}]
model = dict(
    num_queries=30,
    language_model=dict(name={str(bert)!r}),
    backbone=dict(embed_dims=32, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], drop_path_rate=0.0),
    neck=dict(in_channels=[64, 128, 256]),
    encoder=dict(num_layers=1, layer_cfg=dict(ffn_cfg=dict(feedforward_channels=64)),
                 text_layer_cfg=dict(ffn_cfg=dict(feedforward_channels=64)), fusion_layer_cfg=dict(embed_dim=64)),
    decoder=dict(num_layers=2, layer_cfg=dict(ffn_cfg=dict(feedforward_channels=64))),
    test_cfg=dict(max_per_img=30),
)
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None, imdecode_backend='pillow'),
    dict(type='FixScaleResize', scale=(64, 96), keep_ratio=True, backend='pillow'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'text',
                                          'custom_entities', 'tokens_positive')),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
""", encoding="utf-8")
    return {"model": str(config)}


def make_tiny_grounded_models(tmp_dir: str | Path) -> dict[str, Path]:
    """A tiny random hf Grounding DINO folder and a tiny random RepViT-SAM (M0.6, 256 px) file, for CLI runs.

    Pass them as ``--detector-model {detector} --sam-checkpoint {sam} --sam-arch m0_6 --sam-image-size 256``.
    """
    from repvit_plugins.models import build_repvit_sam

    tmp = Path(tmp_dir)
    tmp.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    sam_path = tmp / "tiny_repvit_sam.pt"
    torch.save(build_repvit_sam(arch="m0_6", img_size=256).state_dict(), sam_path)
    return {"detector": make_tiny_hf_grounding_dino(tmp / "gdino"), "sam": sam_path}
