# RepViT-M1.5 Mask R-CNN 1x on COCO (official: box AP 41.6, mask AP 38.6).
_base_ = './mask-rcnn_repvit-m1.1_fpn_1x_coco.py'

model = dict(
    backbone=dict(
        arch='m1_5',
        out_indices=(4, 10, 36, 42),
        init_cfg=dict(type='Pretrained', checkpoint='repvit_m1_5_distill_300e')),
    neck=dict(in_channels=[64, 128, 256, 512]))
