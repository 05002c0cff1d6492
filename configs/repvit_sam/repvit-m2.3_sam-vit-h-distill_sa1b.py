# RepViT-SAM (M2.3 encoder) distilled from SAM ViT-H's image encoder on 1% of SA-1B: MobileSAM's decoupled
# distillation (MSE between the student's and the teacher's 256x64x64 image embeddings; the ViT-H prompt encoder
# and mask decoder are kept as they are). See docs/distill.md for what is and is not reproduced.
#
#   1. python tools/precompute_sam_embeddings.py --config THIS_CONFIG        # teacher runs once (resumable)
#   2. python tools/train.py THIS_CONFIG            (or bash tools/dist_train.sh THIS_CONFIG 8)
#   3. python tools/export_distilled_sam.py work_dirs/<name>/epoch_8.pth repvit_sam_m2_3.pt --config THIS_CONFIG
#
# Data: SA-1B extracted under data_root as sa_000000/ ... (sa_N.jpg + sa_N.json). The first 10 archives (about
# 110k images) are the 1% training set, as MobileSAM's "100k images"; 200 images of sa_000010 are held out.
custom_imports = dict(imports=['repvit_plugins.distill'], allow_failed_imports=False)
default_scope = 'mmengine'

data_root = '{{$SA1B_ROOT:data/sa1b}}'
cache_dir = '{{$SA1B_EMBEDDINGS:data/sa1b_sam_vit_h_embeddings}}'
img_size = 1024
train_subdirs = [f'sa_{i:06d}' for i in range(10)]
val_subdirs = ['sa_000010']

teacher = dict(model_type='vit_h', checkpoint='sam_vit_h_4b8939', img_size=img_size,
               with_encoder=False)  # embeddings come from cache_dir; only the decoder is built (for validation)
model = dict(
    type='SamEncoderDistiller',
    student=dict(arch='m2_3', img_size=img_size, pretrained='repvit_m2_3_distill_450e'),  # ImageNet RepViT
    teacher=teacher,
    eval_cfg=dict(box_source='annotations', num_boxes=16),
)

dataset = dict(type='SamDistillDataset', data_root=data_root, img_size=img_size, cache_dir=cache_dir,
               layout='sa1b')
train_dataloader = dict(
    batch_size=8, num_workers=8, persistent_workers=True, pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(dataset, subdirs=train_subdirs),
)
val_dataloader = dict(
    batch_size=4, num_workers=4, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(dataset, subdirs=val_subdirs, indices=200, with_boxes=True, max_boxes=16),
)
val_evaluator = dict(type='MaskAgreementMetric')

max_epochs = 8
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type='ValLoop')
# MobileSAM published no optimizer or learning rate (its training code was never released): AdamW with a
# short warm-up and cosine decay is this project's choice, see docs/distill.md.
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=5e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=1000),
    dict(type='CosineAnnealingLR', T_max=max_epochs, eta_min=1e-5, by_epoch=True, begin=0, end=max_epochs,
         convert_to_iter_based=True),
]
auto_scale_lr = dict(base_batch_size=8, enable=False)  # --auto-scale-lr: lr x (GPUs x 8) / 8

custom_hooks = [dict(type='ValidateBeforeTrainHook')]
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3, save_best='distill/mIoU', rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)
env_cfg = dict(cudnn_benchmark=True, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
sync_bn = 'torch'  # under DDP the student's BatchNorm statistics are shared across GPUs
log_processor = dict(by_epoch=True, window_size=50)
randomness = dict(seed=0)
log_level = 'INFO'
load_from = None
resume = False
