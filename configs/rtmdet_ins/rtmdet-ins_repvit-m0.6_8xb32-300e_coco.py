# RTMDet-Ins with a RepViT-M0.6 backbone: the M0.9 config (mmdet's rtmdet-ins_tiny recipe) with the smaller
# backbone; taps at strides 8, 16, 32. Not trained here: no COCO numbers exist for this config yet.
_base_ = './rtmdet-ins_repvit-m0.9_8xb32-300e_coco.py'

checkpoint = 'repvit_m0_6_distill_300e'
model = dict(
    backbone=dict(arch='m0_6', out_indices=(4, 14, 17), init_cfg=dict(checkpoint=checkpoint)),
    neck=dict(in_channels=[80, 160, 320]))
