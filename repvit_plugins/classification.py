"""ImageNet-style evaluation: the official eval transform and top-k accuracy."""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def eval_transform(input_size: int = 224, crop_ratio: float = 0.875):
    """Resize the short side to ``input_size / crop_ratio`` (bicubic), center-crop, normalize (official eval)."""
    from torchvision import transforms

    return transforms.Compose([
        transforms.Resize(int(input_size / crop_ratio), interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop(input_size),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
             device: str | torch.device = "cpu", topk: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Top-k accuracy (percent) of ``model`` over ``(images, labels)`` batches."""
    model.eval().to(device)
    correct = {k: 0 for k in topk}
    seen = 0
    for images, labels in batches:
        logits = model(images.to(device))
        labels = labels.to(device)
        ranked = logits.topk(min(max(topk), logits.shape[1]), dim=1).indices
        hits = ranked.eq(labels[:, None])
        for k in topk:
            correct[k] += hits[:, :k].any(dim=1).sum().item()
        seen += labels.numel()
    if seen == 0:
        raise ValueError("the validation set is empty")
    return {f"top{k}": 100.0 * correct[k] / seen for k in topk} | {"images": seen}
