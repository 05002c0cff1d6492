# RepViT-M1.1 Mask R-CNN 1x on COCO: the official recipe (mmdet 2.28) ported to mmdet 3.x.
# 8 GPUs x 2 images; AdamW lr 2e-4, wd 0.05; 12 epochs, lr x0.1 after epochs 8 and 11;
# 500-iteration linear warm-up; (1333, 800). Official result: box AP 39.8, mask AP 37.2.
_base_ = [
    '../_base_/models/mask-rcnn_repvit-m1.1_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05))

# the lr above is for 16 images per step; other GPU counts scale it linearly
auto_scale_lr = dict(enable=True, base_batch_size=16)
