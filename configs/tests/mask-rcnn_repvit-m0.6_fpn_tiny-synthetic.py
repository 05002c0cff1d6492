# Tiny Mask R-CNN for CPU tests: RepViT-M0.6 (random init), slim heads, 128x128 synthetic shapes.
# Inherits the full M1.1 config, so the tests exercise its inheritance chain. The data root comes from
# $REPVIT_TINY_COCO (written by tests/_mm_fixtures.py: images/*.jpg + annotations.json).
_base_ = '../mask_rcnn/mask-rcnn_repvit-m1.1_fpn_1x_coco.py'

data_root = '{{$REPVIT_TINY_COCO:data/tiny/coco/}}'
image_size = (128, 128)
classes = ('square', 'disc')
max_iters = 40

model = dict(
    # BN statistics train here: from random weights they must (the full configs keep the official norm_eval=True)
    backbone=dict(arch='m0_6', out_indices=(1, 4, 14, 17), norm_eval=False, init_cfg=None),
    neck=dict(in_channels=[40, 80, 160, 320], out_channels=64),
    rpn_head=dict(in_channels=64, feat_channels=64),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(in_channels=64, fc_out_channels=256, num_classes=len(classes)),
        mask_roi_extractor=dict(out_channels=64),
        mask_head=dict(num_convs=2, in_channels=64, conv_out_channels=64, num_classes=len(classes))),
    train_cfg=dict(
        rpn=dict(sampler=dict(num=64)),
        rpn_proposal=dict(nms_pre=200, max_per_img=100),
        rcnn=dict(sampler=dict(num=64), mask_size=28)),
    test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=50), rcnn=dict(max_per_img=20)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
dataset = dict(
    type='CocoDataset',
    data_root=data_root,
    ann_file='annotations.json',
    data_prefix=dict(img='images/'),
    metainfo=dict(classes=classes))
train_dataloader = dict(
    _delete_=True,
    batch_size=2,
    num_workers=0,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(**dataset, filter_cfg=dict(filter_empty_gt=True), pipeline=train_pipeline, test_mode=False))
val_dataloader = dict(
    _delete_=True,
    batch_size=2,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(**dataset, pipeline=test_pipeline, test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(
    _delete_=True, type='CocoMetric', ann_file=data_root + 'annotations.json', metric=['bbox', 'segm'])
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(lr=1.5e-3, weight_decay=1e-4))
auto_scale_lr = dict(enable=False)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=5),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters, milestones=[int(max_iters * 0.8)], gamma=0.1),
]
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(by_epoch=False, interval=max_iters),
    visualization=dict(draw=False))
log_processor = dict(by_epoch=False)
env_cfg = dict(dist_cfg=dict(backend='gloo'), mp_cfg=dict(mp_start_method='fork', opencv_num_threads=1))
randomness = dict(seed=0, deterministic=True)
