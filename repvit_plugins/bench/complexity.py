"""Parameter and MAC counts (MACs = FLOPs / 2 of convolutions and matmuls, via torch's FlopCounterMode)."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, input_size: tuple[int, ...] = (1, 3, 224, 224)) -> int:
    """Multiply-accumulates of one forward pass on a zero tensor of ``input_size``."""
    param = next(model.parameters())
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(input_size, device=param.device, dtype=param.dtype))
    model.train(was_training)
    return counter.get_total_flops() // 2


def repvit_complexity(arch: str, size: int = 224, distillation: bool = True) -> dict[str, int]:
    """``params``, ``macs`` of a RepViT classifier at ``size x size`` and the same ``fused_params``, ``fused_macs``."""
    from ..models import build_repvit, reparameterize

    model = build_repvit(arch, distillation=distillation).eval()
    shape = (1, 3, size, size)
    counts = {"params": count_params(model), "macs": count_macs(model, shape)}
    reparameterize(model)
    return counts | {"fused_params": count_params(model), "fused_macs": count_macs(model, shape)}
