# RTMDet-Ins with a RepViT-M0.9 backbone (mmdet 3.x): mmdet's rtmdet-ins_tiny recipe (its CSPNeXt-PAFPN neck,
# RTMDetInsSepBNHead, 300 epochs, AdamW lr 0.004 for 8 GPUs x 32 images, EMA, mosaic + mixup switched off for the
# last 20 epochs) with the backbone swapped. The taps are the last blocks of stages 2-4 (strides 8, 16, 32).
# Not trained here: no COCO numbers exist for this config yet (see docs/openmmlab.md to reproduce).
_base_ = 'mmdet::rtmdet/rtmdet-ins_tiny_8xb32-300e_coco.py'
custom_imports = dict(imports=['repvit_plugins.mm'], allow_failed_imports=False)

checkpoint = 'repvit_m0_9_distill_300e'  # official ImageNet weights (model-zoo name or a path)
model = dict(
    # RepViT's ImageNet weights expect RGB with ImageNet statistics (CSPNeXt's expect BGR)
    data_preprocessor=dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True),
    backbone=dict(
        _delete_=True,
        type='RepViT',
        arch='m0_9',
        out_indices=(6, 22, 26),  # the official detection taps (arch table) at strides 8, 16, 32
        frozen_stages=-1,
        norm_eval=False,  # the RTMDet recipe trains every BN (SyncBN, 32 images per GPU)
        drop_path_rate=0.0,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[96, 192, 384]))

# the lr above is for 8 x 32 images per step; --auto-scale-lr scales it linearly to other batch sizes
auto_scale_lr = dict(enable=False, base_batch_size=256)
