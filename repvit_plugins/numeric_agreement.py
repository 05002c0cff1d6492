"""How close two outputs are: the measures the tools, the benchmark and ``info`` report."""
from __future__ import annotations

import torch

__all__ = ["embedding_error", "relative_error"]


def embedding_error(ours, reference) -> float:
    """``mean |ours - reference| / std(reference)``: fused, compiled or quantized vs the reference model."""
    ours, reference = torch.as_tensor(ours), torch.as_tensor(reference)
    return float((ours - reference).abs().mean() / reference.std())


def relative_error(ours, reference) -> float:
    """``max |ours - reference| / max |reference|``: exported runtimes vs PyTorch."""
    ours, reference = torch.as_tensor(ours), torch.as_tensor(reference)
    return float((ours - reference).abs().max() / reference.abs().max().clamp_min(1e-12))
