"""ImageNet-style evaluation and speed: the official eval transform, top-k accuracy, throughput."""
from __future__ import annotations

import os
import time
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


def evaluate_folder(data: str | os.PathLike, arch: str, checkpoint: str | os.PathLike, *, num_classes: int = 1000,
                    distillation: bool = True, input_size: int = 224, crop_ratio: float = 0.875,
                    batch_size: int = 64, workers: int = 2, device: str | torch.device = "cpu",
                    fuse: bool = False, progress: bool = True) -> dict[str, float]:
    """Top-1/top-5 of a RepViT checkpoint (path or zoo name) on an ImageFolder validation set (official eval)."""
    from torchvision.datasets import ImageFolder
    from tqdm.auto import tqdm

    from ..models import build_repvit, reparameterize
    from ..models.factory import load_repvit_weights

    # build_repvit(pretrained=) takes a str only; a path or zoo name goes straight to the loader it calls
    model = load_repvit_weights(build_repvit(arch, num_classes=num_classes, distillation=distillation), checkpoint)
    if fuse:
        reparameterize(model)
    dataset = ImageFolder(str(data), transform=eval_transform(input_size, crop_ratio))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    return evaluate(model, tqdm(loader, desc="evaluating", unit="batch", disable=not progress), device=device)


def throughput(model: nn.Module, batch: torch.Tensor, warmup: int, iters: int) -> float:
    """Images per second of ``model`` on ``batch`` after ``warmup`` untimed runs (GPU synchronized)."""
    sync = torch.cuda.synchronize if batch.is_cuda else (lambda: None)
    with torch.inference_mode():
        for _ in range(warmup):
            model(batch)
        sync()
        start = time.perf_counter()
        for _ in range(iters):
            model(batch)
        sync()
    return iters * batch.shape[0] / (time.perf_counter() - start)
