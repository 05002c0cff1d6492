"""Distill a RepViT-SAM image encoder from a SAM teacher, the OpenMMLab way.

``custom_imports = dict(imports=['repvit_plugins.distill'], allow_failed_imports=False)``
registers, in mmengine's root registries (``default_scope='mmengine'``):

* ``MODELS``: :class:`SamEncoderDistiller` (student RepViT-SAM encoder, frozen teacher, MSE loss);
* ``DATASETS``: :class:`SamDistillDataset` (a folder or SA-1B, SAM preprocessing, cached embeddings);
* ``METRICS``: :class:`MaskAgreementMetric` (student-teacher box-prompt mask IoU);
* ``HOOKS``: :class:`ValidateBeforeTrainHook` (logs the agreement before training).

Importing it also registers the safe globals that let ``torch.load(weights_only=True)``
read mmengine checkpoints (``--resume``, export). See ``docs/distill.md``.
"""
from __future__ import annotations

import repvit_plugins.mm  # noqa: F401  (safe globals for mmengine checkpoints on torch >= 2.6)

from .dataset import SamDistillDataset, sam_preprocess
from .embedding_cache import CacheError, EmbeddingCache
from .export import export_distilled_sam
from .hooks import ValidateBeforeTrainHook
from .metrics import MaskAgreementMetric
from .model import SamEncoderDistiller, build_student
from .precompute import cache_meta, precompute_embeddings
from .teachers import build_teacher

__all__ = [
    "CacheError", "EmbeddingCache", "MaskAgreementMetric", "SamDistillDataset", "SamEncoderDistiller",
    "ValidateBeforeTrainHook", "build_student", "build_teacher", "cache_meta", "export_distilled_sam",
    "precompute_embeddings", "sam_preprocess",
]


def _register() -> None:
    from mmengine.registry import DATASETS, HOOKS, METRICS, MODELS

    for registry, module in ((MODELS, SamEncoderDistiller), (DATASETS, SamDistillDataset),
                             (METRICS, MaskAgreementMetric), (HOOKS, ValidateBeforeTrainHook)):
        if registry.module_dict.get(module.__name__) is not module:
            registry.register_module(module.__name__, module=module, force=True)


_register()
