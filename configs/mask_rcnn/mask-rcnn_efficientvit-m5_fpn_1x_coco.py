# EfficientViT-M5 (Liu et al., CVPR 2023), timm `efficientvit_m5`:
# Mask R-CNN 1x on COCO with RepViT's recipe (AdamW 2e-4, wd 0.05, 12 epochs, steps 8/11,
# 500-iteration warm-up, (1333, 800), backbone BN in eval mode).
# Neck channels and strides (16, 32, 64) come from timm's feature_info.
# ImageNet weights: timm's `efficientvit_m5.r224_in1k` as a state dict (e.g. its pytorch_model.bin)
# at pretrain/efficientvit_m5.r224_in1k.pth.
# EfficientViT-M has no stride-4/8 stage: its three levels (strides 16, 32, 64) feed the FPN,
# whose outputs, anchors (the usual 32-512 px) and RoI extractors sit at strides 16-256.
_base_ = './mask-rcnn_repvit-m1.1_fpn_1x_coco.py'
import repvit_plugins.mm.timm_config as timm_config  # noqa: E402

model = timm_config.mask_rcnn(
    'efficientvit_m5', out_indices=3,
    checkpoint='pretrain/efficientvit_m5.r224_in1k.pth')
