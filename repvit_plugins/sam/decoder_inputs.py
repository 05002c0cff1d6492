"""The prompt decoder's inputs: predictor-style prompts as the named tensors the decoder graphs take.

One neutral place for :class:`~repvit_plugins.sam.predictor.FastSamPredictor`, the
ONNX export (:mod:`repvit_plugins.sam.onnx_export`) and the onnxruntime decoder
(:class:`~repvit_plugins.sam.ort_backend.OrtPromptDecoder`).
"""
from __future__ import annotations

import torch

__all__ = ["DECODER_INPUTS", "decoder_feeds", "prompt_count"]

DECODER_INPUTS = ["image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input"]


def prompt_count(point_coords: torch.Tensor | None, boxes: torch.Tensor | None,
                 mask_input: torch.Tensor | None) -> int:
    """How many prompts a predictor-style call holds (1 when every prompt tensor is ``None``)."""
    return next((t.shape[0] for t in (point_coords, boxes, mask_input) if t is not None), 1)


def decoder_feeds(image_embeddings: torch.Tensor, point_coords: torch.Tensor | None,
                  point_labels: torch.Tensor | None, boxes: torch.Tensor | None,
                  mask_input: torch.Tensor | None, mask_size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Predictor-style prompts (input frame, batched as ``SamPredictor.predict_torch``) -> decoder inputs.

    Points come first, then the two box corners; without a box a padding point is
    appended, exactly as ``PromptEncoder`` does.
    """
    batch = prompt_count(point_coords, boxes, mask_input)
    coords, labels = [], []
    if point_coords is not None:
        if point_labels is None:
            raise ValueError("point_coords need point_labels")
        coords.append(point_coords.float())
        labels.append(point_labels.float())
    if boxes is not None:
        coords.append(boxes.float().reshape(-1, 2, 2))
        labels.append(torch.tensor([[2.0, 3.0]]).expand(batch, 2))
    else:
        coords.append(torch.zeros(batch, 1, 2))
        labels.append(-torch.ones(batch, 1))
    has_mask = mask_input is not None
    if mask_input is None:
        mask_input = torch.zeros(batch, 1, *mask_size)
    return {
        "image_embeddings": image_embeddings.float().contiguous(),
        "point_coords": torch.cat(coords, dim=1).contiguous(),
        "point_labels": torch.cat(labels, dim=1).contiguous(),
        "mask_input": mask_input.float().expand(batch, -1, -1, -1).contiguous(),
        "has_mask_input": torch.tensor([float(has_mask)]),
    }
