# RepViT-M1.1 Semantic FPN on ADE20K, 512x512 crops, 40k iterations: the official recipe (mmseg 0.30)
# ported to mmseg 1.x. 8 GPUs x 4 images; AdamW lr 2e-4, wd 1e-4; poly decay (power 0.9) to 1e-6.
# Official result: mIoU 40.6 (single scale).
_base_ = [
    '../_base_/models/fpn_repvit-m1.1.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/schedules/schedule_40k.py',
    'mmseg::_base_/default_runtime.py',
]
crop_size = (512, 512)
# test images are padded to a multiple of 32 (the official code resized them to one with AlignResize);
# the padding is cropped off the prediction again
data_preprocessor = dict(size=crop_size, test_cfg=dict(size_divisor=32))
model = dict(data_preprocessor=data_preprocessor, decode_head=dict(num_classes=150))

train_dataloader = dict(batch_size=4)

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=1e-4),
    clip_grad=None)
param_scheduler = [dict(type='PolyLR', power=0.9, eta_min=1e-6, begin=0, end=40000, by_epoch=False)]

# the lr above is for 32 images per step; other GPU counts scale it linearly
auto_scale_lr = dict(enable=True, base_batch_size=32)
