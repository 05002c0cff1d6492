"""The SAM model zoo as data: one :class:`SamModelSpec` per named model, and :func:`build_sam`, the one door.

Every entry is a ``segment_anything.modeling.Sam`` whose image encoder comes from
an encoder *family* (RepViT-SAM and EdgeSAM on this project's one RepViT core, SAM's ViT from ``segment_anything``,
MobileSAM's TinyViT from the ``mobilesam-mirror`` package, EfficientViT-SAM's from ``efficientsam``) with the entry's
arguments, its input size, pixel normalisation and zoo checkpoint. The prompt
encoder and mask decoder are segment_anything's, so every entry gets the same
predictor, fast decoder, embedding cache, batched boxes and ONNX export.
Adding a model = adding an entry (and, for a new family, one encoder builder).
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Mapping

import torch
from torch import nn

from .repvit import ARCHS, canonical_arch
from .repvit_sam import EdgeSamEncoder, RepViTSamEncoder
from .sam_parts import SAM_EMBED_DIM, SAM_PIXEL_MEAN, SAM_PIXEL_STD, assemble_sam, load_sam_checkpoint

if TYPE_CHECKING:  # segment_anything ships no types: mypy sees its classes as Any
    from segment_anything.modeling import Sam

__all__ = ["ENCODER_FAMILIES", "SAM_MODELS", "SamModelSpec", "build_encoder", "build_sam", "repvit_sam_name",
           "sam_model", "sam_model_names", "smoke_variant"]

@dataclass(frozen=True)
class SamModelSpec:
    """One named SAM.

    Attributes:
        name: registry name (``--sam-model``).
        family: encoder family, a key of :data:`ENCODER_FAMILIES`.
        encoder_args: the family builder's arguments.
        img_size: side of the square padded encoder input.
        checkpoint: zoo name of the official weights (flat ``image_encoder.* / prompt_encoder.* / mask_decoder.*``
            layout), or ``None`` (a student you train yourself: pass ``checkpoint=``).
        package: the pip package the encoder family needs, if any.
        zero_shot_coco_ap: published zero-shot COCO instance AP with box prompts (RepViT-SAM's table), if any.
        mask_scoring: ``'iou'`` (the decoder's IoU predictions score and select masks) or ``'stability'``
            (their stability scores, as EdgeSAM's predictor does).
    """

    name: str
    family: str
    encoder_args: Mapping[str, Any] = field(default_factory=dict)
    img_size: int = 1024
    pixel_mean: tuple[float, float, float] = SAM_PIXEL_MEAN
    pixel_std: tuple[float, float, float] = SAM_PIXEL_STD
    checkpoint: str | None = None
    package: str | None = None
    zero_shot_coco_ap: float | None = None
    mask_scoring: str = "iou"


def _repvit_encoder(img_size: int, arch: str) -> nn.Module:
    return RepViTSamEncoder(arch, img_size=img_size)


def _edge_sam_encoder(img_size: int, arch: str) -> nn.Module:
    return EdgeSamEncoder(arch, img_size=img_size)


def _vit_encoder(img_size: int, embed_dim: int, depth: int, num_heads: int,
                 global_attn_indexes: tuple[int, ...] = (), window_size: int = 14, patch_size: int = 16,
                 use_rel_pos: bool = True, mlp_ratio: float = 4.0) -> nn.Module:
    from functools import partial

    from segment_anything.modeling import ImageEncoderViT

    return ImageEncoderViT(
        img_size=img_size, patch_size=patch_size, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
        mlp_ratio=mlp_ratio, out_chans=SAM_EMBED_DIM, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6),
        use_rel_pos=use_rel_pos, window_size=window_size, global_attn_indexes=tuple(global_attn_indexes),
    )


def _import_tiny_vit() -> type[nn.Module]:
    """MobileSAM's ``TinyViT``, imported without letting it overwrite timm's own ``tiny_vit_*`` models."""
    timm_registry: ModuleType | None
    try:
        from timm.models import _registry as timm_registry
    except ImportError:  # no timm: nothing to protect
        timm_registry = None
    saved = dict(timm_registry._model_entrypoints) if timm_registry else {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from mobile_sam.modeling import TinyViT
    except ImportError as err:
        raise ImportError("mobile_sam needs MobileSAM's code: pip install mobilesam-mirror==1.0.0") from err
    if timm_registry:
        timm_registry._model_entrypoints.update(saved)
    return TinyViT


def _efficientvit_encoder(img_size: int, variant: str, input_size: int) -> nn.Module:
    """EfficientViT-SAM's encoder from the ``efficientsam`` package (mit-han-lab's code, packaged).

    It sees the image at ``input_size`` (512 for L0-L2, 1024 for XL0-XL1) and gives the 64 x 64 embedding
    SAM's prompt side expects in the ``img_size`` frame; :class:`~repvit_plugins.sam.predictor.FastSamPredictor`
    reads ``input_size`` to feed it.
    """
    try:
        from efficientsam.models.efficientvit import sam as efficientvit_sam
        from efficientsam.models.nn.norm import set_norm_eps
    except ImportError as err:
        raise ImportError("EfficientViT-SAM needs its code: pip install efficientsam==1.0.0") from err
    encoder = getattr(efficientvit_sam, f"efficientvit_sam_{variant}")().image_encoder
    set_norm_eps(encoder, 1e-6)  # as the released checkpoints were trained
    encoder.img_size, encoder.input_size = img_size, input_size
    return encoder


def _tiny_vit_encoder(img_size: int, **kwargs: Any) -> nn.Module:
    TinyViT = _import_tiny_vit()
    return TinyViT(img_size=img_size, in_chans=3, num_classes=1000, **kwargs)


ENCODER_FAMILIES: dict[str, Callable[..., nn.Module]] = {
    "repvit": _repvit_encoder,
    "edge_sam": _edge_sam_encoder,
    "vit": _vit_encoder,
    "tiny_vit": _tiny_vit_encoder,
    "efficientvit": _efficientvit_encoder,
}
"""How to build each family's encoder: ``builder(img_size, **encoder_args)``."""

_VIT = {
    "vit_b": dict(embed_dim=768, depth=12, num_heads=12, global_attn_indexes=(2, 5, 8, 11)),
    "vit_l": dict(embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23)),
    "vit_h": dict(embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31)),
}


def _entries() -> list[SamModelSpec]:
    entries = [SamModelSpec("repvit_sam", "repvit", {"arch": "m2_3"}, checkpoint="repvit_sam", zero_shot_coco_ap=44.4)]
    entries += [SamModelSpec(f"repvit_sam_{arch}", "repvit", {"arch": arch}) for arch in ARCHS if arch != "m2_3"]
    entries += [
        *(SamModelSpec(name, "edge_sam", {"arch": "m1"}, checkpoint=name, mask_scoring="stability")
          for name in ("edge_sam", "edge_sam_3x")),
        SamModelSpec("mobile_sam", "tiny_vit", dict(
            embed_dims=(64, 128, 160, 320), depths=(2, 2, 6, 2), num_heads=(2, 4, 5, 10), window_sizes=(7, 7, 14, 7),
            mlp_ratio=4.0, drop_rate=0.0, drop_path_rate=0.0, use_checkpoint=False, mbconv_expand_ratio=4.0,
            local_conv_size=3, layer_lr_decay=0.8), checkpoint="mobile_sam", package="mobilesam-mirror",
            zero_shot_coco_ap=42.7),
        *(SamModelSpec(f"efficientvit_sam_{v}", "efficientvit", {"variant": v, "input_size": size},
                       checkpoint=f"efficientvit_sam_{v}", package="efficientsam")
          for v, size in (("l0", 512), ("l1", 512), ("l2", 512), ("xl0", 1024), ("xl1", 1024))),
        SamModelSpec("sam_vit_b", "vit", _VIT["vit_b"], checkpoint="sam_vit_b_01ec64", zero_shot_coco_ap=42.5),
        SamModelSpec("sam_vit_l", "vit", _VIT["vit_l"], checkpoint="sam_vit_l_0b3195"),
        SamModelSpec("sam_vit_h", "vit", _VIT["vit_h"], checkpoint="sam_vit_h_4b8939", zero_shot_coco_ap=46.8),
    ]
    return entries


SAM_MODELS: dict[str, SamModelSpec] = {entry.name: entry for entry in _entries()}
"""Every named SAM. ``repvit_sam`` is the official RepViT-SAM (M2.3); ``repvit_sam_<arch>`` are distilled students."""


def repvit_sam_name(arch: str) -> str:
    """The entry of a RepViT-SAM with encoder ``arch``: ``'repvit_sam'`` for M2.3, else the student's."""
    arch = canonical_arch(arch)
    return "repvit_sam" if arch == "m2_3" else f"repvit_sam_{arch}"


def sam_model_names() -> list[str]:
    return list(SAM_MODELS)


def sam_model(name: str) -> SamModelSpec:
    """The entry called ``name``; an unknown name raises ``ValueError`` listing the known ones."""
    if name not in SAM_MODELS:
        raise ValueError(f"unknown SAM model {name!r}; choose one of {', '.join(SAM_MODELS)}")
    return SAM_MODELS[name]


def smoke_variant(name: str) -> tuple[int, dict[str, Any]]:
    """``(img_size, encoder_args)`` of a small random-weight variant of entry ``name`` for smoke runs.

    The family's own code at a 128 input (RepViT, EdgeSAM: the entry's arch; ViT: 1/8 of the width, 2 blocks,
    4 x 4 windows) or, where the family always gives a 64 x 64 embedding, in the 1024 frame with fewer channels and
    blocks (TinyViT: one block per stage) or a 128 encoder input (EfficientViT: L0, the smallest model the package
    builds, for every EfficientViT entry). Timings of these mean nothing; they exercise every path in seconds.
    """
    spec = sam_model(name)
    if spec.family == "vit":
        return 128, dict(embed_dim=spec.encoder_args["embed_dim"] // 8, depth=2, num_heads=2, window_size=4,
                         global_attn_indexes=(1,))
    if spec.family == "tiny_vit":
        # MobileSAM's TinyViT keeps its last stage at stride 16 only for a 320 (448, 576) wide one
        return spec.img_size, dict(embed_dims=(16, 32, 64, 320), depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 5),
                                   mlp_ratio=1.0)
    if spec.family == "efficientvit":  # the package's builders fix widths and depths: its smallest, L0, for all
        return spec.img_size, dict(variant="l0", input_size=128)
    return 128, {}


def build_encoder(name: str, img_size: int | None = None, **overrides: Any) -> nn.Module:
    """The image encoder of entry ``name`` (random weights); ``overrides`` change its family arguments."""
    spec = sam_model(name)
    return ENCODER_FAMILIES[spec.family](img_size or spec.img_size, **{**spec.encoder_args, **overrides})


def build_sam(name: str = "repvit_sam", checkpoint: str | os.PathLike | Mapping[str, torch.Tensor] | None = None, *,
              pretrained: bool = False, device: str | torch.device = "cpu", img_size: int | None = None,
              encoder_args: Mapping[str, Any] | None = None) -> Sam:
    """A named SAM (a ``segment_anything`` ``Sam``) in eval mode.

    Args:
        name: a :data:`SAM_MODELS` name, e.g. ``'repvit_sam'``, ``'mobile_sam'``, ``'sam_vit_b'``.
        checkpoint: weights in the flat SAM layout (path, zoo name or state dict), loaded with strict keys;
            a file of another entry is refused with the keys that do not fit.
        pretrained: load the entry's official zoo checkpoint when ``checkpoint`` is ``None``.
        device: where the model lives.
        img_size: encoder input side (default: the entry's; RepViT and ViT accept other multiples of 16).
        encoder_args: overrides of the family arguments (e.g. :func:`smoke_variant`'s smaller encoders).
    """
    spec = sam_model(name)
    if checkpoint is None and pretrained:
        if spec.checkpoint is None:
            raise ValueError(f"{name} has no official checkpoint (a student you train yourself); pass checkpoint=")
        checkpoint = spec.checkpoint
    size = img_size or spec.img_size
    sam = assemble_sam(build_encoder(name, size, **(encoder_args or {})), size, spec.pixel_mean, spec.pixel_std)
    sam.mask_scoring = spec.mask_scoring
    if checkpoint is not None:
        load_sam_checkpoint(sam, checkpoint)
    return sam.to(device).eval()
