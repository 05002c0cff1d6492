"""Grounding DINO from the official code (the ``groundingdino-py`` package).

The model is built from a config (default: the package's ``GroundingDINO_SwinT_OGC.py``)
and loaded from ``groundingdino_swint_ogc.pth`` through the project's model zoo. Its
BERT is read from ``text_encoder``, a local folder, so it works offline.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..runtime.quiet import quietly
from ..weights.checkpoint_io import extract_state_dict, load_checkpoint_file, strict_load
from ..weights.zoo import resolve_checkpoint
from .detector import DetectorLoadError, GroundingDetector, load_error
from .prompts import PromptChunk

__all__ = ["DEFAULT_CHECKPOINT", "OriginalGroundingDetector", "default_config", "load_args"]

DEFAULT_CHECKPOINT = "groundingdino_swint_ogc"
# keys the official checkpoint holds that the inference model has no use for
_IGNORED_KEYS = r"label_enc\.|bert\.embeddings\.position_ids$"
_MEAN, _STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]

_BERT_HINT = (
    "groundingdino-py needs its BERT text encoder in a local folder. On a machine with internet access run\n"
    "  huggingface-cli download bert-base-uncased config.json vocab.txt tokenizer_config.json "
    "model.safetensors --local-dir DIR\n"
    "copy DIR here and pass it: build_detector('original', text_encoder=DIR), or --text-encoder DIR."
)


def default_config() -> Path:
    """The SwinT OGC config file shipped inside the groundingdino package."""
    try:
        import groundingdino
    except ImportError as err:
        raise DetectorLoadError("the 'original' backend needs groundingdino-py: "
                                "pip install --no-deps groundingdino-py==0.4.0") from err
    return Path(groundingdino.__file__).parent / "config" / "GroundingDINO_SwinT_OGC.py"


def load_args(config: str | Path | None, text_encoder: str | Path | None, device: torch.device) -> Any:
    """groundingdino-py's ``SLConfig`` args of ``config`` (default: SwinT OGC), reading BERT from ``text_encoder``."""
    from groundingdino.util.slconfig import SLConfig

    path = Path(config).expanduser() if config else default_config()
    if not path.is_file():
        raise DetectorLoadError(f"no groundingdino config at {path}; pass a config file such as {default_config()}")
    args = SLConfig.fromfile(str(path))
    args.device = str(device)
    # gradient checkpointing only saves training memory; it changes nothing at inference
    args.use_checkpoint = False
    args.use_transformer_ckpt = False
    if text_encoder is not None:
        encoder = Path(text_encoder).expanduser()
        if not (encoder / "config.json").is_file():
            raise DetectorLoadError(f"no BERT folder at {encoder} (config.json missing).\n{_BERT_HINT}")
        args.text_encoder_type = str(encoder.resolve())
    return args


class OriginalGroundingDetector(GroundingDetector):
    """The official Grounding DINO (groundingdino-py).

    Args:
        config: model config file (default: the package's SwinT OGC config).
        checkpoint: weights file or zoo name (default ``groundingdino_swint_ogc``); read with ``weights_only=True``.
        text_encoder: local BERT folder (``bert-base-uncased`` saved with ``save_pretrained``); without it the
            config's ``text_encoder_type`` is looked up in the Hugging Face cache.
        image_size / max_size: test-time resize of the shortest / longest edge (official: 800 / 1333).
        Other arguments: see :class:`GroundingDetector`.
    """

    def __init__(self, config: str | Path | None = None, checkpoint: str | Path | None = None,
                 text_encoder: str | Path | None = None, *, image_size: int = 800, max_size: int = 1333,
                 **kwargs: Any):
        super().__init__(**kwargs)
        args = load_args(config, text_encoder, self.device)
        weights = resolve_checkpoint(checkpoint or DEFAULT_CHECKPOINT)
        self.model = self.build_network(args)
        state = extract_state_dict(load_checkpoint_file(weights))
        strict_load(self.model, state, ignore=_IGNORED_KEYS, what=str(weights))
        self.model.eval().to(self.device)
        self.name = str(weights)
        self.max_text_len = int(getattr(self.model, "max_text_len", 256))
        self.image_size, self.max_size = int(image_size), int(max_size)

    @staticmethod
    def build_network(args: Any) -> torch.nn.Module:
        """The random-initialised network of ``args`` (``load_args``); load errors name what to download."""
        from groundingdino.models import build_model

        try:
            with quietly():
                return build_model(args)
        except (OSError, ValueError) as err:
            raise load_error(f"load the text encoder {args.text_encoder_type!r}", err, _BERT_HINT) from err

    @property
    def tokenizer(self) -> Any:
        return self.model.tokenizer

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """The official test transform: resize (shortest edge, capped longest edge), to tensor, normalize."""
        import groundingdino.datasets.transforms as T
        from PIL import Image

        transform = T.Compose([T.RandomResize([self.image_size], max_size=self.max_size), T.ToTensor(),
                               T.Normalize(_MEAN, _STD)])
        tensor, _ = transform(Image.fromarray(image), None)
        return tensor

    def forward(self, images: list[np.ndarray], chunk: PromptChunk) -> tuple[torch.Tensor, torch.Tensor]:
        from groundingdino.util.misc import nested_tensor_from_tensor_list

        ids = list(self.tokenizer(chunk.caption)["input_ids"])
        if ids != list(chunk.input_ids):  # the model tokenizes the caption itself; spans must agree
            raise RuntimeError(f"tokenizing {chunk.caption!r} gave other tokens than the class spans assume")
        samples = nested_tensor_from_tensor_list([self.preprocess(image) for image in images]).to(self.device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            outputs = self.model(samples, captions=[chunk.caption] * len(images))
        return outputs["pred_logits"], outputs["pred_boxes"]
