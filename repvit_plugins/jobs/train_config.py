"""The training configs of an auto-labelled dataset: ``DATASET/rtmdet-ins_repvit-<arch>_autolabel.py`` or
``DATASET/mask-rcnn_repvit-<arch>_autolabel.py`` (the instance-segmentation student) and
``DATASET/fpn_repvit-<arch>_autolabel.py`` (Semantic FPN on the label maps of :mod:`.semantic`).

Each file inherits the project's RepViT config of its task and changes what the
dataset decides: the backbone variant (taps and channels from the arch table),
the classes, the data (paths relative to the file), a schedule scaled to the
number of training images and, for RTMDet-Ins, augmentations scaled to it.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

from ..runtime.resources import config_path

__all__ = ["KINDS", "STUDENTS", "RTMDetAugmentation", "TrainingSchedule", "config_name", "project_config",
           "rtmdet_augmentation", "write_training_config"]

TARGET_ITERATIONS = 4000
"""Small datasets train for about this many iterations (at least the official 12 epochs, at most 300)."""


def project_config(relative: str) -> Path:
    """The absolute path of one of the project's configs, ``relative`` to its ``configs/`` folder (inside an
    installed wheel, or the checkout's): every generated config inherits through this function."""
    return config_path(relative)


def config_name(arch: str, kind: str = "mask-rcnn") -> str:
    """``mask-rcnn_repvit-m0.9_autolabel.py`` for ``'m0_9'`` (OpenMMLab naming); ``fpn_...`` for the semantic one."""
    return f"{kind}_repvit-{arch.replace('_', '.')}_autolabel.py"


# per kind: the image size and the images per GPU and step when the schedule leaves them open
_DEFAULT_SIZE = {"rtmdet-ins": (640, 640), "mask-rcnn": (1333, 800), "fpn": (1333, 800)}
_DEFAULT_BATCH = {"rtmdet-ins": 8, "mask-rcnn": 2, "fpn": 2}


@dataclass(frozen=True)
class TrainingSchedule:
    """What to train: backbone variant, weights, epochs (``None``: scaled to the data), image size, batch.

    ``image_size`` and ``batch_size`` left ``None`` take the config kind's default (:meth:`for_kind`):
    RTMDet-Ins 640 x 640 and 8 images, Mask R-CNN and Semantic FPN (1333, 800) and 2 images. One
    number is a square size.
    """

    arch: str = "m0_9"
    pretrained: bool = True
    epochs: int | None = None
    image_size: tuple[int, ...] | None = None
    batch_size: int | None = None

    def __post_init__(self) -> None:
        from ..models.repvit import canonical_arch

        object.__setattr__(self, "arch", canonical_arch(self.arch))  # an unknown arch fails before labelling
        if self.image_size is not None:
            size = tuple(int(v) for v in self.image_size)
            if len(size) not in (1, 2):
                raise ValueError(f"image size: one number (square) or two (LONG SHORT); got {size}")
            object.__setattr__(self, "image_size", size * 2 if len(size) == 1 else size)
        if ((self.epochs is not None and self.epochs < 1) or (self.batch_size is not None and self.batch_size < 1)
                or (self.image_size is not None and min(self.image_size) < 1)):
            raise ValueError("epochs, the training batch size and the image size must be positive")

    def for_kind(self, kind: str) -> TrainingSchedule:
        """This schedule with the defaults of config ``kind`` filled in."""
        return replace(self, image_size=self.image_size or _DEFAULT_SIZE[kind],
                       batch_size=self.batch_size or _DEFAULT_BATCH[kind])

    def epochs_for(self, num_train: int) -> int:
        """``epochs``, or enough for :data:`TARGET_ITERATIONS` iterations on one GPU (12 to 300)."""
        if self.epochs is not None:
            return self.epochs
        return min(300, max(12, math.ceil(TARGET_ITERATIONS / self._steps_per_epoch(num_train))))

    def iterations_for(self, num_train: int) -> int:
        """The iterations of :meth:`epochs_for` epochs (the semantic config's iteration-based schedule)."""
        return self.epochs_for(num_train) * self._steps_per_epoch(num_train)

    @property
    def resolved_image_size(self) -> tuple[int, ...]:
        """``image_size`` of a schedule taken for a config kind (:meth:`for_kind`)."""
        if self.image_size is None:
            raise ValueError("the image size is open: take the schedule of a config kind, schedule.for_kind(kind)")
        return self.image_size

    @property
    def resolved_batch_size(self) -> int:
        """``batch_size`` of a schedule taken for a config kind (:meth:`for_kind`)."""
        if self.batch_size is None:
            raise ValueError("the batch size is open: take the schedule of a config kind, schedule.for_kind(kind)")
        return self.batch_size

    def _steps_per_epoch(self, num_train: int) -> int:
        return max(1, math.ceil(num_train / self.resolved_batch_size))


def _header(kind: str, dataset: Path, images_root: Path, classes: Sequence[str], num_train: int,
            schedule: TrainingSchedule, checkpoint: str) -> str:
    """The lines both configs share: how to run them, the base, the paths (relative to the file) and the data."""
    arch, name, recipe = schedule.arch, config_name(schedule.arch, kind), _RECIPES[kind]
    images = os.path.relpath(images_root, dataset).replace(os.sep, "/") + "/"
    what = f"RepViT-{arch.upper().replace('_', '.')} {recipe.title}"
    return f'''# Generated by `repvit-plugins autolabel`: {what} on the
# auto-labelled dataset in this folder ({num_train} training images). Edit freely; rerunning autolabel rewrites it.
#   python tools/train.py {dataset / name}
#   python tools/test.py {dataset / name} work_dirs/{name[:-3]}/{checkpoint}
_base_ = {str(project_config(recipe.base(arch)))!r}

# Paths are relative to this file, so the dataset stays valid when its folder and the photos move together.
# Photos moved elsewhere alone: --cfg-options {{train,val,test}}_dataloader.dataset.data_prefix.{recipe.image_key}=NEW/
data_root = '{{{{ fileDirname }}}}/'
images_root = data_root + {images!r}  # the image file names of the dataset start here
classes = {tuple(classes)!r}
image_size = {tuple(schedule.resolved_image_size)!r}
'''


def _model(schedule: TrainingSchedule, out_indices: Sequence[int]) -> str:
    """The backbone and neck lines of ``model = dict(...)``: the arch, its taps and their channels, its init."""
    from ..models.repvit import ARCHS

    arch = schedule.arch
    widths = [ARCHS[arch].channels[0]] + [spec[1] for spec in ARCHS[arch].block_specs()]  # of features[i]
    channels = [widths[i] for i in out_indices]
    init = f"dict(type='Pretrained', checkpoint='repvit_{arch}_distill_300e')" if schedule.pretrained else "None"
    return (f"    backbone=dict(arch={arch!r}, out_indices={tuple(out_indices)!r}, init_cfg={init}),\n"
            f"    neck=dict(in_channels={list(channels)!r}),")


def _mask_rcnn_text(dataset: Path, images_root: Path, classes: Sequence[str], num_train: int,
                    schedule: TrainingSchedule) -> str:
    from ..models.repvit import ARCHS

    epochs = schedule.epochs_for(num_train)
    steps = sorted({max(1, round(epochs * 8 / 12)), max(1, round(epochs * 11 / 12))})
    warmup = min(500, max(1, schedule.iterations_for(num_train) // 10))
    header = _header("mask-rcnn", dataset, images_root, classes, num_train, schedule, f"epoch_{epochs}.pth")
    return header + f'''max_epochs = {epochs}

model = dict(
{_model(schedule, ARCHS[schedule.arch].det_out_indices)}
    roi_head=dict(bbox_head=dict(num_classes=len(classes)), mask_head=dict(num_classes=len(classes))))

backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
dataset = dict(type='CocoDataset', data_root=data_root, data_prefix=dict(img=images_root),
               metainfo=dict(classes=classes))
train_dataloader = dict(
    batch_size={schedule.batch_size},
    dataset=dict(**dataset, ann_file='train.json', filter_cfg=dict(filter_empty_gt=True, min_size=1),
                 pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(**dataset, ann_file='val.json', pipeline=test_pipeline, test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'val.json', metric=['bbox', 'segm'])
test_evaluator = val_evaluator

train_cfg = dict(max_epochs=max_epochs, val_interval=max(1, max_epochs // 4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end={warmup}),
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=max_epochs, milestones={steps!r}, gamma=0.1),
]
default_hooks = dict(checkpoint=dict(interval=max(1, max_epochs // 4), max_keep_ckpts=2))
'''


def _semantic_fpn_text(dataset: Path, images_root: Path, classes: Sequence[str], num_train: int,
                       schedule: TrainingSchedule) -> str:
    from ..models.repvit import ARCHS
    from .semantic import LABEL_DIR

    iterations = schedule.iterations_for(num_train)
    crop = min(512, min(schedule.resolved_image_size))
    header = _header("fpn", dataset, images_root, classes, num_train, schedule, f"iter_{iterations}.pth")
    return header + f'''max_iters = {iterations}
crop_size = {(crop, crop)!r}

# label maps: 0 = background (no label), 1 ... len(classes) = the dataset's categories in order
model = dict(
    data_preprocessor=dict(size=crop_size),
{_model(schedule, ARCHS[schedule.arch].seg_out_indices)}
    decode_head=dict(num_classes=len(classes) + 1))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),  # reduce_zero_label=False: the dataset's
    dict(type='RandomResize', scale=image_size, ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
dataset = dict(_delete_=True, type='BaseSegDataset', data_root=data_root,
               data_prefix=dict(img_path=images_root, seg_map_path={LABEL_DIR!r}), img_suffix='',
               seg_map_suffix='.png', reduce_zero_label=False, metainfo=dict(classes=('background', *classes)))
train_dataloader = dict(
    batch_size={schedule.batch_size},
    dataset=dict(**dataset, ann_file={LABEL_DIR + "/train.txt"!r}, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(**dataset, ann_file={LABEL_DIR + "/val.txt"!r}, pipeline=test_pipeline))
test_dataloader = val_dataloader

train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max(1, max_iters // 4))
param_scheduler = [dict(type='PolyLR', power=0.9, eta_min=1e-6, begin=0, end=max_iters, by_epoch=False)]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=max(1, max_iters // 4), max_keep_ckpts=2))
'''


MOSAIC_MIN_IMAGES = 20
"""Fewer training images get no mosaic: its cache would tile the same few photos again and again."""
MIXUP_MIN_IMAGES = 200
"""Fewer training images get no mixup (blending two photos blurs what a small dataset shows once)."""


@dataclass(frozen=True)
class RTMDetAugmentation:
    """How much of RTMDet's augmentation a dataset gets.

    ``switch_epoch``: when ``PipelineSwitchHook`` turns to the plain pipeline for the last epochs (``None``:
    the plain pipeline throughout, as without a mosaic there is nothing to switch off).
    """

    mosaic: bool
    mixup: bool
    cache: int  # images the mosaic draws from (CachedMosaic needs at least 4)
    switch_epoch: int | None


def rtmdet_augmentation(num_train: int, epochs: int) -> RTMDetAugmentation:
    """RTMDet's recipe scaled down to ``num_train`` images.

    The recipe (COCO, 118k images) mosaics and mixes from caches of 20-40 images and trains the last 20 of 300
    epochs on the plain pipeline. Below :data:`MOSAIC_MIN_IMAGES` the plain pipeline runs throughout; below
    :data:`MIXUP_MIN_IMAGES` there is no mixup; below 1,000 images the plain phase is the last quarter of the
    epochs, closer to the photos the model will see.
    """
    mosaic = num_train >= MOSAIC_MIN_IMAGES
    if not mosaic:
        return RTMDetAugmentation(False, False, 0, None)
    plain = max(1, epochs // 4) if num_train < 1000 else max(1, round(epochs * 20 / 300))
    return RTMDetAugmentation(True, num_train >= MIXUP_MIN_IMAGES, min(40, num_train), max(1, epochs - plain))


def _rtmdet_train_pipeline(plan: RTMDetAugmentation) -> str:
    """``train_pipeline`` (mosaic, mixup as planned) and ``train_pipeline_stage2`` (the recipe's plain one)."""
    load = """    dict(type='LoadImageFromFile', backend_args=backend_args),
    # poly2mask=True (the default; the recipe's False would drop the dataset's RLE masks)
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
"""
    tail = """    dict(type='YOLOXHSVRandomAug'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', size=image_size, pad_val=dict(img=(114, 114, 114))),
"""
    plain = f"""train_pipeline_stage2 = [
{load}    dict(type='RandomResize', scale=image_size, ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=image_size, recompute_bbox=True, allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1, 1)),
{tail}    dict(type='PackDetInputs'),
]
"""
    if not plan.mosaic:
        return plain + "train_pipeline = train_pipeline_stage2  # too few images for a mosaic\n"
    mixup = ("    dict(type='CachedMixUp', img_scale=image_size, ratio_range=(1.0, 1.0), max_cached_images="
             f"{max(4, plan.cache // 2)},\n         random_pop=False, pad_val=(114, 114, 114), prob=0.5),\n"
             if plan.mixup else "")
    return plain + f"""train_pipeline = [
{load}    dict(type='CachedMosaic', img_scale=image_size, pad_val=114.0, max_cached_images={plan.cache},
         random_pop=False),
    dict(type='RandomResize', scale=(2 * image_size[0], 2 * image_size[1]), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=image_size, recompute_bbox=True, allow_negative_crop=True),
{tail}{mixup}    dict(type='FilterAnnotations', min_gt_bbox_wh=(1, 1)),
    dict(type='PackDetInputs'),
]
"""


def _rtmdet_ins_text(dataset: Path, images_root: Path, classes: Sequence[str], num_train: int,
                     schedule: TrainingSchedule) -> str:
    from ..models.repvit import ARCHS

    side = max(schedule.resolved_image_size)
    schedule = replace(schedule, image_size=(side, side))  # RTMDet trains and tests on squares
    epochs, iterations = schedule.epochs_for(num_train), schedule.iterations_for(num_train)
    plan = rtmdet_augmentation(num_train, epochs)
    # RTMDet's AdamW lr 0.004 is for 256 images per step; square-root scaling suits Adam at small batches
    lr = 0.004 * math.sqrt(schedule.resolved_batch_size / 256)
    warmup = min(1000, max(1, iterations // 10))
    header = _header("rtmdet-ins", dataset, images_root, classes, num_train, schedule, f"epoch_{epochs}.pth")
    switch = ("" if plan.switch_epoch is None else
              f"\n    dict(type='PipelineSwitchHook', switch_epoch={plan.switch_epoch}, "
              "switch_pipeline=train_pipeline_stage2),")
    return header + f'''max_epochs = {epochs}
base_lr = {lr:.3g}  # RTMDet's 0.004 for 256 images per step, times sqrt({schedule.batch_size} / 256)

model = dict(
{_model(schedule, ARCHS[schedule.arch].det_out_indices[1:])}
    bbox_head=dict(num_classes=len(classes)))

backend_args = None
# mosaic: {plan.mosaic}, mixup: {plan.mixup} for {num_train} training images (see repvit_plugins.jobs.train_config)
{_rtmdet_train_pipeline(plan)}test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='Pad', size=image_size, pad_val=dict(img=(114, 114, 114))),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
dataset = dict(type='CocoDataset', data_root=data_root, data_prefix=dict(img=images_root),
               metainfo=dict(classes=classes))
train_dataloader = dict(
    batch_size={schedule.batch_size}, num_workers=4, persistent_workers=True,
    dataset=dict(**dataset, ann_file='train.json', filter_cfg=dict(filter_empty_gt=True, min_size=1),
                 pipeline=train_pipeline))
val_dataloader = dict(batch_size=4, num_workers=2, persistent_workers=True,
                      dataset=dict(**dataset, ann_file='val.json', pipeline=test_pipeline, test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'val.json', metric=['bbox', 'segm'])
test_evaluator = val_evaluator

train_cfg = dict(max_epochs=max_epochs, val_interval=max(1, max_epochs // 4), dynamic_intervals=None)
optim_wrapper = dict(optimizer=dict(lr=base_lr))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-5, by_epoch=False, begin=0, end={warmup}),
    dict(type='CosineAnnealingLR', eta_min=base_lr * 0.05, begin=max_epochs // 2, end=max_epochs,
         T_max=max_epochs - max_epochs // 2, by_epoch=True, convert_to_iter_based=True),
]
default_hooks = dict(checkpoint=dict(interval=max(1, max_epochs // 4), max_keep_ckpts=2))
custom_hooks = [
    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0002, update_buffers=True, priority=49),{switch}
]
'''


def write_training_config(dataset: str | Path, classes: Sequence[str], num_train: int, schedule: TrainingSchedule,
                          *, images_root: str | Path | None = None, kind: str = "mask-rcnn") -> Path:
    """Write the ``kind`` config (one of :data:`KINDS`) into the ``dataset`` folder; returns its path.

    ``images_root`` is where the dataset's image file names start (default: the dataset folder).
    """
    from ..io.atomic import atomic_write_text

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    dataset = Path(dataset).resolve()
    images_root = Path(images_root).resolve() if images_root is not None else dataset
    schedule = schedule.for_kind(kind)
    text = _RECIPES[kind].text(dataset, images_root, classes, num_train, schedule)
    return atomic_write_text(dataset / config_name(schedule.arch, kind), text)


def _rtmdet_base(arch: str) -> str:
    """The project's RTMDet-Ins config of ``arch`` (its neck width), else the M0.9 one (the generated file sets
    the backbone either way)."""
    name = f"rtmdet_ins/rtmdet-ins_repvit-{arch.replace('_', '.')}_8xb32-300e_coco.py"
    return name if project_config(name).is_file() else "rtmdet_ins/rtmdet-ins_repvit-m0.9_8xb32-300e_coco.py"


@dataclass(frozen=True)
class _Recipe:
    """One kind of config: what it trains, the project config it inherits (by arch), its images key, its text."""

    title: str
    base: Callable[[str], str]  # arch -> path relative to configs/
    image_key: str  # the data_prefix key of the images
    text: Callable[[Path, Path, Sequence[str], int, TrainingSchedule], str]


_RECIPES = {
    "rtmdet-ins": _Recipe("RTMDet-Ins", _rtmdet_base, "img", _rtmdet_ins_text),
    "mask-rcnn": _Recipe("Mask R-CNN", lambda _arch: "mask_rcnn/mask-rcnn_repvit-m1.1_fpn_1x_coco.py", "img",
                         _mask_rcnn_text),
    "fpn": _Recipe("Semantic FPN", lambda _arch: "sem_fpn/fpn_repvit-m1.1_8xb4-40k_ade20k-512x512.py", "img_path",
                   _semantic_fpn_text),
}
KINDS = tuple(_RECIPES)
"""The configs an auto-labelled dataset can get: instance segmentation (two students), semantic segmentation."""
STUDENTS = ("rtmdet-ins", "mask-rcnn")
"""The instance-segmentation students ``autolabel --student`` chooses from (the first is the default)."""
