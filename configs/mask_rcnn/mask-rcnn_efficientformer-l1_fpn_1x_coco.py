# EfficientFormer-L1 (Li et al., NeurIPS 2022), timm `efficientformer_l1`:
# Mask R-CNN 1x on COCO with RepViT's recipe (AdamW 2e-4, wd 0.05, 12 epochs, steps 8/11,
# 500-iteration warm-up, (1333, 800), backbone BN in eval mode).
# Neck channels and strides (4, 8, 16, 32) come from timm's feature_info.
# ImageNet weights: timm's `efficientformer_l1.snap_dist_in1k` as a state dict (e.g. its pytorch_model.bin)
# at pretrain/efficientformer_l1.snap_dist_in1k.pth.
# Its attention is built for one input size: img_size (1344, 1344); inputs are zero-padded to it and
# the outputs cropped back; the 224x224 attention biases of the weights are resampled bicubically.
_base_ = './mask-rcnn_repvit-m1.1_fpn_1x_coco.py'
import repvit_plugins.mm.timm_config as timm_config  # noqa: E402

model = timm_config.mask_rcnn(
    'efficientformer_l1', img_size=(1344, 1344),
    checkpoint='pretrain/efficientformer_l1.snap_dist_in1k.pth')
