"""RepViT models: the classification family and the RepViT-SAM encoder."""
from .factory import build_repvit
from .repvit import ARCHS, RepViT, RepViTArch, canonical_arch, reparameterize

__all__ = ["ARCHS", "RepViT", "RepViTArch", "build_repvit", "canonical_arch", "reparameterize", "build_repvit_sam",
           "build_sam", "SAM_MODELS"]


def __getattr__(name: str):
    if name == "build_repvit_sam":  # segment_anything is imported only when SAM is asked for
        from .repvit_sam import build_repvit_sam

        return build_repvit_sam
    if name in ("build_sam", "SAM_MODELS"):
        from . import sam_registry

        return getattr(sam_registry, name)
    raise AttributeError(name)
