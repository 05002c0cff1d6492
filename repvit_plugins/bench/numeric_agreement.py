"""How close two outputs are: the measures the tools, the benchmark and ``info`` report."""
from __future__ import annotations

import torch

__all__ = ["boxes_matched", "embedding_error", "mask_iou", "mean_mask_iou", "relative_error"]


def embedding_error(ours, reference) -> float:
    """``mean |ours - reference| / std(reference)``: fused, compiled or quantized vs the reference model."""
    ours, reference = torch.as_tensor(ours), torch.as_tensor(reference)
    return float((ours - reference).abs().mean() / reference.std())


def relative_error(ours, reference) -> float:
    """``max |ours - reference| / max |reference|``: exported runtimes vs PyTorch."""
    ours, reference = torch.as_tensor(ours), torch.as_tensor(reference)
    return float((ours - reference).abs().max() / reference.abs().max().clamp_min(1e-12))


def boxes_matched(ours, reference, iou: float = 0.9) -> float:
    """Share of the ``reference`` boxes (xyxy) that some box of ``ours`` overlaps at IoU >= ``iou`` (1.0 if none).

    For set predictions such as Grounding DINO's queries, whose order may change between numeric paths.
    """
    from torchvision.ops import box_iou

    ours, reference = torch.as_tensor(ours).float().reshape(-1, 4), torch.as_tensor(reference).float().reshape(-1, 4)
    if len(reference) == 0:
        return 1.0
    if len(ours) == 0:
        return 0.0
    return float((box_iou(reference, ours).max(dim=1).values >= iou).float().mean())


def mask_iou(ours, reference) -> torch.Tensor:
    """IoU of each pair of boolean masks ``(N, ...)``, as a float tensor ``(N,)``.

    The one mask IoU of the package. Convention: two empty masks agree, IoU 1.0 (nothing predicted where nothing
    is, e.g. the same empty output of two numeric paths); an empty mask against a non-empty one scores 0.0.
    """
    ours, reference = torch.as_tensor(ours).bool().flatten(1), torch.as_tensor(reference).bool().flatten(1)
    inter = (ours & reference).sum(1).float()
    union = (ours | reference).sum(1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def mean_mask_iou(ours, reference) -> float:
    """Mean :func:`mask_iou` of paired masks ``(N, H, W)``; 1.0 for no pairs."""
    ious = mask_iou(ours, reference)
    return float(ious.mean()) if len(ious) else 1.0
