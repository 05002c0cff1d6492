# RepViT-M1.5 Semantic FPN on ADE20K, 40k iterations (official: mIoU 43.6).
_base_ = './fpn_repvit-m1.1_8xb4-40k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        arch='m1_5',
        out_indices=(5, 11, 37, 42),
        init_cfg=dict(type='Pretrained', checkpoint='repvit_m1_5_distill_300e')),
    neck=dict(in_channels=[64, 128, 256, 512]))
