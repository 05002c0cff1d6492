# RepViT-M2.3 Semantic FPN on ADE20K, 40k iterations (official: mIoU 46.1).
_base_ = './fpn_repvit-m1.1_8xb4-40k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        arch='m2_3',
        out_indices=(7, 15, 51, 54),
        init_cfg=dict(type='Pretrained', checkpoint='repvit_m2_3_distill_300e')),
    neck=dict(in_channels=[80, 160, 320, 640]))
