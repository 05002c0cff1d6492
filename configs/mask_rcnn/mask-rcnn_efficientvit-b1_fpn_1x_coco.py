# EfficientViT-B1 (Cai et al., ICCV 2023), timm `efficientvit_b1`:
# Mask R-CNN 1x on COCO with RepViT's recipe (AdamW 2e-4, wd 0.05, 12 epochs, steps 8/11,
# 500-iteration warm-up, (1333, 800), backbone BN in eval mode).
# Neck channels and strides (4, 8, 16, 32) come from timm's feature_info.
# ImageNet weights: timm's `efficientvit_b1.r224_in1k` as a state dict (e.g. its pytorch_model.bin)
# at pretrain/efficientvit_b1.r224_in1k.pth.
_base_ = './mask-rcnn_repvit-m1.1_fpn_1x_coco.py'
import repvit_plugins.mm.timm_config as timm_config  # noqa: E402

model = timm_config.mask_rcnn(
    'efficientvit_b1',
    checkpoint='pretrain/efficientvit_b1.r224_in1k.pth')
