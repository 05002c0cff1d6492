# MobileViTv2-1.0 (Mehta & Rastegari, 2022), timm `mobilevitv2_100`:
# Semantic FPN on ADE20K, 512x512 crops, 40k iterations with RepViT's recipe
# (AdamW 2e-4, wd 1e-4, poly 0.9, 8x4 images, backbone BN in eval mode).
# Neck channels and strides (4, 8, 16, 32) come from timm's feature_info.
# ImageNet weights: timm's `mobilevitv2_100.cvnets_in1k` as a state dict (e.g. its pytorch_model.bin)
# at pretrain/mobilevitv2_100.cvnets_in1k.pth.
_base_ = './fpn_repvit-m1.1_8xb4-40k_ade20k-512x512.py'
import repvit_plugins.mm.timm_config as timm_config  # noqa: E402

model = timm_config.semantic_fpn(
    'mobilevitv2_100',
    checkpoint='pretrain/mobilevitv2_100.cvnets_in1k.pth')
