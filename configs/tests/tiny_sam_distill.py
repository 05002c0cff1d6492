# Tiny CPU distillation run for the tests: a small random ViT SAM teacher (img_size 256 -> 16x16 embedding),
# a random RepViT-M0.6 student, a handful of synthetic images. $REPVIT_TINY_DISTILL (written by
# tests/_distill_fixtures.py) holds images/{train,val}/*.png, cache/ (teacher embeddings) and teacher.pth.
custom_imports = dict(imports=['repvit_plugins.distill'], allow_failed_imports=False)
default_scope = 'mmengine'

root = '{{$REPVIT_TINY_DISTILL:data/tiny_distill}}'
data_root = root + '/images'
cache_dir = root + '/cache'
teacher_checkpoint = root + '/teacher.pth'
img_size = 256

teacher = dict(model_type='vit', checkpoint=teacher_checkpoint, img_size=img_size, with_encoder=False,
               vit=dict(embed_dim=48, depth=2, num_heads=2, window_size=8, global_attn_indexes=[1]))
model = dict(
    type='SamEncoderDistiller',
    student=dict(arch='m0_6', img_size=img_size, pretrained=None),
    teacher=teacher,
    eval_cfg=dict(box_source='random', num_boxes=16),  # a random teacher's masks cover whole images
)

dataset = dict(type='SamDistillDataset', data_root=data_root, img_size=img_size, cache_dir=cache_dir)
train_dataloader = dict(
    batch_size=4, num_workers=0,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(dataset, subdirs=['train']),
)
val_dataloader = dict(
    batch_size=2, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(dataset, subdirs=['val']),
)
val_evaluator = dict(type='MaskAgreementMetric')

max_iters = 30
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=2e-3, weight_decay=5e-4))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=max_iters, by_epoch=False, eta_min=1e-5)]

custom_hooks = [dict(type='ValidateBeforeTrainHook')]
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=1, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
log_processor = dict(by_epoch=False, window_size=1)  # every iteration's own loss in the logs
randomness = dict(seed=0)
log_level = 'WARNING'
