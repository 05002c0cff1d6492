# Mask R-CNN + FPN with a RepViT-M1.1 backbone (mmdet 3.x). The detection taps are the official ones:
# the second-to-last block of stages 1-3 and the last block, at strides 4, 8, 16, 32.
_base_ = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'
custom_imports = dict(imports=['repvit_plugins.mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='RepViT',
        arch='m1_1',
        out_indices=(2, 6, 20, 24),
        frozen_stages=-1,
        norm_eval=True,  # official: every backbone BN stays in eval mode while training
        drop_path_rate=0.0,
        # official ImageNet checkpoint (model-zoo name: downloaded once into $REPVIT_PLUGINS_HOME; a path works too)
        init_cfg=dict(type='Pretrained', checkpoint='repvit_m1_1_distill_300e')),
    neck=dict(in_channels=[64, 128, 256, 512]))
