"""Config-time helpers: the model overrides that put a timm backbone into the Mask R-CNN / Semantic FPN recipes.

From a config file (modules imported in a config are dropped from it, so import the module, not names)::

    _base_ = './mask-rcnn_repvit-m1.1_fpn_1x_coco.py'
    import repvit_plugins.mm.timm_config as timm_config

    model = timm_config.mask_rcnn('efficientvit_b1', checkpoint='pretrain/efficientvit_b1.r224_in1k.pth')

The neck's ``in_channels`` and every stride (anchors, RoI extractors, the FPN head) come from timm's
``feature_info``; nothing is hard-coded. Backbones whose features start at stride 16 (EfficientViT-M)
get anchors of the usual sizes (32-512 px at scale 8 x stride 4) on their own strides.
"""
from __future__ import annotations

from typing import Sequence

from ..models.timm_features import OutIndices, feature_info

__all__ = ["backbone", "mask_rcnn", "semantic_fpn"]

_WRAPPER_ARGS = ("frozen_stages", "norm_eval")  # TimmBackbone's own; everything else goes to timm


def backbone(model_name: str, out_indices: OutIndices = 4, checkpoint: str | None = None, **kwargs) -> dict:
    """``dict(type='TimmBackbone', ...)`` replacing the base config's backbone (BN in eval mode by default)."""
    init_cfg = None if checkpoint is None else dict(type="Pretrained", checkpoint=checkpoint)
    return dict(_delete_=True, type="TimmBackbone", model_name=model_name, out_indices=out_indices,
                **{"frozen_stages": -1, "norm_eval": True, **kwargs}, init_cfg=init_cfg)


def _levels(model_name: str, out_indices: OutIndices, kwargs: dict) -> tuple[list[int], list[int]]:
    timm_kwargs = {k: v for k, v in kwargs.items() if k not in _WRAPPER_ARGS}
    levels = feature_info(model_name, out_indices, **timm_kwargs)
    return [d["num_chs"] for d in levels], [d["reduction"] for d in levels]


def _pyramid(first_stride: int, count: int) -> list[int]:
    return [first_stride * 2 ** i for i in range(count)]


def mask_rcnn(model_name: str, out_indices: OutIndices = 4, checkpoint: str | None = None, num_outs: int = 5,
              **kwargs) -> dict:
    """``model`` overrides for mmdet's Mask R-CNN + FPN: backbone, neck channels, anchor and RoI strides."""
    channels, strides = _levels(model_name, out_indices, kwargs)
    pyramid = _pyramid(strides[0], num_outs)
    roi_strides = pyramid[:4]
    return dict(
        backbone=backbone(model_name, out_indices, checkpoint, **kwargs),
        neck=dict(in_channels=channels, num_outs=num_outs),
        rpn_head=dict(anchor_generator=dict(strides=pyramid, scales=[max(1, 32 // strides[0])])),
        roi_head=dict(bbox_roi_extractor=dict(featmap_strides=roi_strides),
                      mask_roi_extractor=dict(featmap_strides=roi_strides)))


def semantic_fpn(model_name: str, out_indices: OutIndices = 4, checkpoint: str | None = None,
                 img_size: Sequence[int] | None = None, **kwargs) -> dict:
    """``model`` overrides for mmseg's Semantic FPN: backbone, neck channels, head strides.

    With ``img_size`` (fixed-resolution attention), testing slides ``img_size`` windows over the image.
    """
    if img_size is not None:
        kwargs["img_size"] = tuple(img_size)
    channels, strides = _levels(model_name, out_indices, kwargs)
    model = dict(backbone=backbone(model_name, out_indices, checkpoint, **kwargs),
                 neck=dict(in_channels=channels),
                 decode_head=dict(feature_strides=_pyramid(strides[0], 4)))
    if img_size is not None:
        model["test_cfg"] = dict(mode="slide", crop_size=tuple(img_size), stride=tuple(s * 2 // 3 for s in img_size))
    return model
