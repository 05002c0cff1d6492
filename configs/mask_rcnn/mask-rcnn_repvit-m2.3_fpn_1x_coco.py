# RepViT-M2.3 Mask R-CNN 1x on COCO (official: box AP 44.6, mask AP 40.8).
_base_ = './mask-rcnn_repvit-m1.1_fpn_1x_coco.py'

model = dict(
    backbone=dict(
        arch='m2_3',
        out_indices=(6, 14, 50, 54),
        init_cfg=dict(type='Pretrained', checkpoint='repvit_m2_3_distill_300e')),
    neck=dict(in_channels=[80, 160, 320, 640]))
