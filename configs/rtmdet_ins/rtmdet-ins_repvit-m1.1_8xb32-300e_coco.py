# RTMDet-Ins with a RepViT-M1.1 backbone: the M0.9 config with the wider neck and head of mmdet's rtmdet-ins_s
# (128 channels) and the tiny recipe's lighter mixup; taps at strides 8, 16, 32.
# Not trained here: no COCO numbers exist for this config yet.
_base_ = './rtmdet-ins_repvit-m0.9_8xb32-300e_coco.py'

checkpoint = 'repvit_m1_1_distill_300e'
model = dict(
    backbone=dict(arch='m1_1', out_indices=(6, 20, 24), init_cfg=dict(checkpoint=checkpoint)),
    neck=dict(in_channels=[128, 256, 512], out_channels=128),
    bbox_head=dict(in_channels=128, feat_channels=128))
