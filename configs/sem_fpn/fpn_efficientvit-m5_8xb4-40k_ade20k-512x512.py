# EfficientViT-M5 (Liu et al., CVPR 2023), timm `efficientvit_m5`:
# Semantic FPN on ADE20K, 512x512 crops, 40k iterations with RepViT's recipe
# (AdamW 2e-4, wd 1e-4, poly 0.9, 8x4 images, backbone BN in eval mode).
# Neck channels and strides (16, 32, 64) come from timm's feature_info.
# ImageNet weights: timm's `efficientvit_m5.r224_in1k` as a state dict (e.g. its pytorch_model.bin)
# at pretrain/efficientvit_m5.r224_in1k.pth.
# EfficientViT-M has no stride-4/8 stage: its three levels (strides 16, 32, 64) feed the FPN,
# whose four outputs (strides 16-128) feed the FPN head.
_base_ = './fpn_repvit-m1.1_8xb4-40k_ade20k-512x512.py'
import repvit_plugins.mm.timm_config as timm_config  # noqa: E402

model = timm_config.semantic_fpn(
    'efficientvit_m5', out_indices=3,
    checkpoint='pretrain/efficientvit_m5.r224_in1k.pth')
