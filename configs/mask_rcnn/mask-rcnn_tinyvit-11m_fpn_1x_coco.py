# TinyViT-11M (Wu et al., ECCV 2022), timm `tiny_vit_11m_224`:
# Mask R-CNN 1x on COCO with RepViT's recipe (AdamW 2e-4, wd 0.05, 12 epochs, steps 8/11,
# 500-iteration warm-up, (1333, 800), backbone BN in eval mode).
# Neck channels and strides (4, 8, 16, 32) come from timm's feature_info.
# ImageNet weights: timm's `tiny_vit_11m_224.in1k` as a state dict (e.g. its pytorch_model.bin)
# at pretrain/tiny_vit_11m_224.in1k.pth.
_base_ = './mask-rcnn_repvit-m1.1_fpn_1x_coco.py'
import repvit_plugins.mm.timm_config as timm_config  # noqa: E402

model = timm_config.mask_rcnn(
    'tiny_vit_11m_224',
    checkpoint='pretrain/tiny_vit_11m_224.in1k.pth')
