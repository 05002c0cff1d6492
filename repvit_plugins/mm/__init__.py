"""RepViT for OpenMMLab: ``custom_imports = dict(imports=['repvit_plugins.mm'], allow_failed_imports=False)``.

Importing this module

* registers the backbones as ``type='RepViT'`` and ``type='TimmBackbone'`` (any
  timm model through ``features_only``) in mmengine's root ``MODELS`` and in
  ``mmdet.registry.MODELS`` / ``mmseg.registry.MODELS`` (each only if that
  package is installed, so either one alone is enough);
* registers :class:`ReparameterizeHook` in mmengine's ``HOOKS``;
* lets ``torch.load(weights_only=True)`` read mmengine Runner checkpoints, so
  ``resume`` and ``load_from`` work on torch >= 2.6 with the safe loader on.
"""
from __future__ import annotations

from .checkpoint_safety import register_safe_globals

register_safe_globals()

from .backbone import RepViTBackbone  # noqa: E402  (needs mmengine; after the safe globals on purpose)
from .hooks import ReparameterizeHook  # noqa: E402
from .timm_backbone import TimmBackbone  # noqa: E402

__all__ = ["RepViTBackbone", "ReparameterizeHook", "REGISTERED_IN", "TimmBackbone", "register_safe_globals"]
BACKBONES = {"RepViT": RepViTBackbone, "TimmBackbone": TimmBackbone}


def _register() -> tuple[str, ...]:
    """Register the backbones and hook; return the scopes whose MODELS know them."""
    from mmengine.registry import HOOKS, MODELS

    registries = [MODELS]
    for package in ("mmdet", "mmseg"):
        try:
            registries.append(__import__(f"{package}.registry", fromlist=["MODELS"]).MODELS)
        except ImportError:  # only one of mmdet / mmseg installed: register where possible
            continue
    for registry in registries:
        for name, backbone in BACKBONES.items():
            if registry.module_dict.get(name) is not backbone:
                registry.register_module(name, module=backbone, force=True)
    if "ReparameterizeHook" not in HOOKS.module_dict:
        HOOKS.register_module("ReparameterizeHook", module=ReparameterizeHook)
    return tuple(registry.scope for registry in registries)


REGISTERED_IN: tuple[str, ...] = _register()
