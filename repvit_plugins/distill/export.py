"""Trained student -> flat RepViT-SAM checkpoint (``image_encoder.*`` + the teacher's prompt encoder and mask decoder).

The result has the layout of the official ``repvit_sam.pt`` and loads with
``build_repvit_sam(checkpoint=path, arch=arch)``. It holds tensors only.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Mapping

import torch

from ..models.repvit import ARCHS
from ..weights.checkpoint_io import CheckpointError, extract_state_dict, load_checkpoint_file
from ..weights.zoo import resolve_checkpoint
from .agreement import decode_logits
from .teachers import load_prompt_decoder_state

__all__ = ["student_state_dict", "infer_arch", "distilled_sam_state_dict", "export_distilled_sam"]


def student_state_dict(checkpoint: str | os.PathLike | Mapping) -> dict[str, torch.Tensor]:
    """The student encoder's tensors (``features.*``, ``neck.*``) of a training checkpoint.

    Accepts an mmengine checkpoint of :class:`SamEncoderDistiller` (``student.*`` keys under
    ``state_dict``; mmengine's EMAHook already puts the averaged weights there), a flat
    RepViT-SAM file (``image_encoder.*``) or a bare encoder state dict.
    """
    if not isinstance(checkpoint, Mapping):  # mmengine checkpoints load safely: the package registered their globals
        checkpoint = load_checkpoint_file(resolve_checkpoint(checkpoint))
    state = extract_state_dict(checkpoint)
    for prefix in ("student.", "image_encoder.", ""):
        found = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix + "features.")
                 or k.startswith(prefix + "neck.")}
        if any(k.startswith("features.") for k in found):
            return found
    raise CheckpointError("no student encoder weights (student.features.* or features.*) in the checkpoint; "
                          "pass a checkpoint written by a distillation run (work_dirs/.../epoch_N.pth)")


def infer_arch(state: Mapping[str, torch.Tensor]) -> str:
    """The RepViT arch of an encoder state dict, from its stem width and number of blocks."""
    if "features.0.2.c.weight" not in state:
        raise CheckpointError("cannot tell the RepViT arch of a fused or unknown encoder layout; pass arch= explicitly")
    width = state["features.0.2.c.weight"].shape[0]
    blocks = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("features."))
    legacy = "features.1.token_mixer.0.conv1.c.weight" in state  # the first version's RepVGG-DW (M1/M2/M3)
    for name, arch in ARCHS.items():
        if arch.channels[0] == width and arch.num_features == blocks and arch.legacy == legacy:
            return name
    raise CheckpointError(f"no RepViT arch has stem width {width} and {blocks} blocks; pass arch= explicitly")


def distilled_sam_state_dict(student: Mapping[str, torch.Tensor],
                             teacher_checkpoint: str | os.PathLike | Mapping) -> dict[str, torch.Tensor]:
    """``image_encoder.*`` from ``student`` plus ``prompt_encoder.*`` / ``mask_decoder.*`` from the teacher."""
    flat = {f"image_encoder.{k}": v.detach().cpu().contiguous() for k, v in student.items()}
    flat.update({k: v.detach().cpu().contiguous() for k, v in load_prompt_decoder_state(teacher_checkpoint).items()})
    return flat


def export_distilled_sam(checkpoint: str | os.PathLike | Mapping, teacher_checkpoint: str | os.PathLike | Mapping,
                         out: str | os.PathLike, arch: str | None = None, img_size: int = 1024,
                         verify: bool = True) -> tuple[Path, str]:
    """Write the flat checkpoint to ``out`` (atomically, parent folders created); return ``(path, arch)``.

    With ``verify``, the weights are first loaded into ``build_repvit_sam`` (strict keys) and one
    random image is embedded and decoded, so a broken export is never written.
    """
    from ..io.atomic import atomic_write_bytes
    from ..models.repvit import canonical_arch

    student = student_state_dict(checkpoint)
    arch = canonical_arch(arch) if arch else infer_arch(student)
    flat = distilled_sam_state_dict(student, teacher_checkpoint)
    if verify:
        _verify(flat, arch, img_size)
    buffer = io.BytesIO()
    torch.save(flat, buffer)
    return atomic_write_bytes(Path(out).expanduser(), buffer.getvalue()), arch


@torch.no_grad()
def _verify(flat: Mapping[str, torch.Tensor], arch: str, img_size: int) -> None:
    from ..models.repvit_sam import build_repvit_sam

    sam = build_repvit_sam(checkpoint=flat, arch=arch, img_size=img_size)
    image = torch.rand(1, 3, img_size, img_size) * 255
    embedding = sam.image_encoder(sam.preprocess(image))
    masks, _ = decode_logits(sam, embedding, boxes=torch.tensor([[0.0, 0.0, img_size / 2, img_size / 2]]))
    if not torch.isfinite(masks).all():
        raise CheckpointError("the exported model predicts non-finite masks: the student weights are broken "
                              "(did the training loss diverge?); nothing was written")
