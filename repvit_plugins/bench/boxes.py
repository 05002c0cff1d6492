"""Random box prompts: for agreement checks where no detector or annotation gives boxes."""
from __future__ import annotations

import torch

__all__ = ["random_boxes"]


def random_boxes(input_size: tuple[int, int], num_boxes: int, generator: torch.Generator,
                 min_side: float = 0.1) -> torch.Tensor:
    """``num_boxes`` random xyxy boxes inside ``input_size`` (h, w), each side at least ``min_side`` of the image."""
    h, w = input_size
    size = torch.tensor([w, h], dtype=torch.float32)
    wh = (min_side + (1 - min_side) * torch.rand(num_boxes, 2, generator=generator)) * size
    x0y0 = torch.rand(num_boxes, 2, generator=generator) * (size - wh)
    return torch.cat([x0y0, x0y0 + wh], dim=1)
