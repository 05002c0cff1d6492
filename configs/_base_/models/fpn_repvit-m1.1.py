# Semantic FPN with a RepViT-M1.1 backbone (mmseg 1.x). The segmentation taps are the official ones:
# the last block of every stage, at strides 4, 8, 16, 32.
_base_ = 'mmseg::_base_/models/fpn_r50.py'
custom_imports = dict(imports=['repvit_plugins.mm'], allow_failed_imports=False)

model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='RepViT',
        arch='m1_1',
        out_indices=(3, 7, 21, 24),
        frozen_stages=-1,
        norm_eval=True,  # official: every backbone BN stays in eval mode while training
        drop_path_rate=0.0,
        init_cfg=dict(type='Pretrained', checkpoint='repvit_m1_1_distill_300e')),
    neck=dict(in_channels=[64, 128, 256, 512]))
