# EfficientFormerV2-S2 (Li et al., ICCV 2023), timm `efficientformerv2_s2`:
# Semantic FPN on ADE20K, 512x512 crops, 40k iterations with RepViT's recipe
# (AdamW 2e-4, wd 1e-4, poly 0.9, 8x4 images, backbone BN in eval mode).
# Neck channels and strides (4, 8, 16, 32) come from timm's feature_info.
# ImageNet weights: timm's `efficientformerv2_s2.snap_dist_in1k` as a state dict (e.g. its pytorch_model.bin)
# at pretrain/efficientformerv2_s2.snap_dist_in1k.pth.
# Its attention is built for one input size: img_size (512, 512); inputs are zero-padded to it and
# the outputs cropped back; the 224x224 attention biases of the weights are resampled bicubically.
# Testing slides 512x512 windows over the image (stride 341).
_base_ = './fpn_repvit-m1.1_8xb4-40k_ade20k-512x512.py'
import repvit_plugins.mm.timm_config as timm_config  # noqa: E402

model = timm_config.semantic_fpn(
    'efficientformerv2_s2', img_size=(512, 512),
    checkpoint='pretrain/efficientformerv2_s2.snap_dist_in1k.pth')
