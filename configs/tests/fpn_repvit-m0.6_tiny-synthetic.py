# Tiny Semantic FPN for CPU tests: RepViT-M0.6 (random init), slim neck/head, 128x128 synthetic shapes.
# Inherits the full M1.1 config, so the tests exercise its inheritance chain. The data root comes from
# $REPVIT_TINY_ADE (written by tests/_mm_fixtures.py: ADE20K layout, images/ + annotations/).
_base_ = '../sem_fpn/fpn_repvit-m1.1_8xb4-40k_ade20k-512x512.py'

data_root = '{{$REPVIT_TINY_ADE:data/tiny/ade/}}'
crop_size = (128, 128)
classes = ('background', 'square', 'disc')
max_iters = 30
norm_cfg = dict(type='BN', requires_grad=True)  # SyncBN needs GPUs; BN also runs under gloo DDP on CPU

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(arch='m0_6', out_indices=(2, 5, 15, 17), init_cfg=None),
    neck=dict(in_channels=[40, 80, 160, 320], out_channels=32),
    decode_head=dict(in_channels=[32, 32, 32, 32], channels=32, num_classes=len(classes), norm_cfg=norm_cfg))

pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=False),
    dict(type='PackSegInputs'),
]
dataset = dict(
    type='BaseSegDataset',
    data_root=data_root,
    metainfo=dict(classes=classes, palette=[[128, 128, 128], [220, 60, 40], [40, 90, 220]]),
    img_suffix='.jpg',
    seg_map_suffix='.png',
    reduce_zero_label=False,
    pipeline=pipeline)
train_dataloader = dict(
    _delete_=True,
    batch_size=2,
    num_workers=0,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(**dataset, data_prefix=dict(img_path='images/training', seg_map_path='annotations/training')))
val_dataloader = dict(
    _delete_=True,
    batch_size=1,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(**dataset, data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation')))
test_dataloader = val_dataloader

optim_wrapper = dict(optimizer=dict(lr=2e-3))
auto_scale_lr = dict(enable=False)
param_scheduler = [  # nearly constant lr: the fastest way to overfit the four images
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters, milestones=[int(max_iters * 0.8)], gamma=0.1),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(
    logger=dict(interval=5),
    checkpoint=dict(by_epoch=False, interval=max_iters),
    visualization=dict(draw=False))
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'),
               mp_cfg=dict(mp_start_method='fork', opencv_num_threads=1))
randomness = dict(seed=0, deterministic=True)
