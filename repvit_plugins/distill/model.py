"""The mmengine model: a RepViT-SAM student encoder learns a frozen SAM teacher's image embeddings.

MobileSAM's decoupled distillation: the loss is the MSE between the student's and
the teacher's ``256 x S/16 x S/16`` embeddings; no mask decoder is trained. The
teacher embeddings come from the batch (``teacher_embed``, read from the cache) or,
when absent, from the teacher's own image encoder. Validation decodes the same box
prompts with the teacher's prompt encoder and mask decoder from both embeddings and
reports their mask IoU (:mod:`.agreement`).

Checkpoints hold the student only: the teacher is rebuilt from its own checkpoint,
so a ViT-H teacher does not put 2.5 GB into every epoch's file.
"""
from __future__ import annotations

import os
import re
from typing import Mapping, Sequence

import torch
from mmengine.model import BaseModel
from torch import nn
from torch.nn import functional as F

from ..models.repvit_sam import RepViTSamEncoder
from .agreement import box_prompt_agreement
from .teachers import build_teacher

__all__ = ["SamEncoderDistiller", "build_student", "load_student_weights"]


def load_student_weights(encoder: RepViTSamEncoder, spec: str | os.PathLike) -> RepViTSamEncoder:
    """Initialise a student from ImageNet RepViT weights (trunk only) or a RepViT-SAM checkpoint (trunk + neck).

    ``spec`` is a path or zoo name: ``'repvit_m0_9_distill_450e'`` (official / timm / mm layouts, the
    classifier is dropped) or a flat ``image_encoder.*`` file such as ``repvit_sam.pt``.
    """
    from ..models.factory import load_repvit_weights
    from ..models.repvit import RepViT
    from ..weights.checkpoint_io import extract_state_dict, load_checkpoint_file, strict_load
    from ..weights.zoo import resolve_checkpoint

    state = extract_state_dict(load_checkpoint_file(resolve_checkpoint(spec)))
    if any(k.startswith("image_encoder.") for k in state):
        strict_load(encoder, {k[len("image_encoder."):]: v for k, v in state.items() if k.startswith("image_encoder.")},
                    what=str(spec))
        return encoder
    trunk = load_repvit_weights(RepViT(encoder.arch_name, num_classes=0, last_stride=1), state)
    encoder.features.load_state_dict(trunk.features.state_dict())
    return encoder


def build_student(arch: str = "m2_3", img_size: int = 1024, pretrained: str | None = None) -> RepViTSamEncoder:
    """A :class:`RepViTSamEncoder`, optionally initialised by :func:`load_student_weights`."""
    encoder = RepViTSamEncoder(arch, img_size=img_size)
    return load_student_weights(encoder, pretrained) if pretrained else encoder


class SamEncoderDistiller(BaseModel):
    """Decoupled distillation of a SAM image encoder into a RepViT-SAM encoder.

    Args:
        student: :func:`build_student` arguments (``arch``, ``img_size``, ``pretrained``).
        teacher: :func:`~repvit_plugins.distill.teachers.build_teacher` arguments; use
            ``with_encoder=False`` when every batch carries cached ``teacher_embed``.
        eval_cfg: :func:`~repvit_plugins.distill.agreement.box_prompt_agreement` options for
            validation (``box_source``, ``num_boxes``, ``points_per_side``, ``seed``).
        loss_weight: factor on the MSE loss.
    """

    def __init__(self, student: Mapping, teacher: Mapping, eval_cfg: Mapping | None = None,
                 loss_weight: float = 1.0, data_preprocessor: Mapping | None = None, init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.student = build_student(**student)
        teacher = dict(teacher)
        teacher.setdefault("img_size", self.student.img_size)
        self.teacher = build_teacher(**teacher)
        grid = self.student.embedding_size
        if tuple(self.teacher.prompt_encoder.image_embedding_size) != (grid, grid):
            raise ValueError(
                f"teacher embeds on a {tuple(self.teacher.prompt_encoder.image_embedding_size)} grid, the student on "
                f"({grid}, {grid}): give both the same img_size"
            )
        self.eval_cfg = dict(eval_cfg or {})
        self.loss_weight = loss_weight
        # public since torch 2.2; the private twin behaves the same for an in-place hook
        register = getattr(self, "register_state_dict_post_hook", None) or self._register_state_dict_hook
        register(_drop_teacher_keys)
        self.register_load_state_dict_post_hook(_ignore_missing_teacher_keys)

    def train(self, mode: bool = True) -> "SamEncoderDistiller":
        super().train(mode)
        self.teacher.eval()  # frozen: dropout/BN of the teacher never switch to training
        return self

    def teacher_embeddings(self, inputs: torch.Tensor, teacher_embed: Sequence[torch.Tensor] | torch.Tensor | None):
        """Cached embeddings from the batch, or the teacher encoder's output."""
        if teacher_embed is not None:
            embed = torch.stack(list(teacher_embed)) if not torch.is_tensor(teacher_embed) else teacher_embed
            return embed.to(inputs.device, torch.float32)
        with torch.no_grad():
            return self.teacher.image_encoder(inputs).float()

    def forward(self, inputs, data_samples=None, mode: str = "tensor", teacher_embed=None):
        inputs = torch.stack(list(inputs)) if not torch.is_tensor(inputs) else inputs
        student = self.student(inputs)
        if mode == "tensor":
            return student
        target = self.teacher_embeddings(inputs, teacher_embed)
        if mode == "loss":
            return dict(loss_mse=F.mse_loss(student.float(), target) * self.loss_weight)
        if mode == "predict":
            return self._agreement(student, target, data_samples)
        raise ValueError(f"unknown mode {mode!r}; use 'loss', 'predict' or 'tensor'")

    def _agreement(self, student: torch.Tensor, target: torch.Tensor, data_samples) -> list[dict]:
        results = []
        for i, sample in enumerate(data_samples):
            iou = box_prompt_agreement(
                self.teacher, student[i], target[i], tuple(sample.input_size), sample.key,
                boxes=sample.get("boxes"), **self.eval_cfg,
            )
            results.append(dict(key=sample.key, iou=iou.cpu(),
                                embed_mse=F.mse_loss(student[i].float(), target[i]).item()))
        return results


def _drop_teacher_keys(module: nn.Module, state: dict, prefix: str, local_metadata) -> None:
    for key in [k for k in state if k.startswith(prefix + "teacher.")]:
        del state[key]


_TEACHER_KEY = re.compile(r"(^|\.)teacher\.")


def _ignore_missing_teacher_keys(module: nn.Module, incompatible) -> None:
    incompatible.missing_keys[:] = [k for k in incompatible.missing_keys if not _TEACHER_KEY.search(k)]
