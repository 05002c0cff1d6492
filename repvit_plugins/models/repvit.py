"""RepViT (CVPR 2024) in plain PyTorch, with the official state-dict key layout.

One arch table drives every variant. Module names follow the official code, so
official checkpoints load without renaming (``features.0.0.c.weight``,
``features.N.token_mixer...``, ``features.N.channel_mixer.m.0.c.weight``,
``classifier.classifier.l.weight``, ``classifier.classifier_dist...``).

``features[0]`` is the stem; every later entry is one block. Blocks of stride 2
("downsample" blocks) sit between stages. Intermediate outputs are addressed by
that block index, as the official detection/segmentation code does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "ARCHS",
    "RepViTArch",
    "RepViT",
    "canonical_arch",
    "conv_like",
    "fold_bn",
    "is_reparameterizable",
    "reparameterize",
]


@torch.no_grad()
def fold_bn(weight: torch.Tensor, bias: torch.Tensor | None,
             bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold ``bn`` into a preceding linear op with ``weight`` (out first) and ``bias``."""
    mean, var = _running_stats(bn)
    scale = bn.weight / torch.sqrt(var + bn.eps)
    shape = (-1,) + (1,) * (weight.dim() - 1)
    base = bias if bias is not None else torch.zeros_like(mean)
    return weight * scale.reshape(shape), bn.bias + (base - mean) * scale


def _running_stats(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """``(running_mean, running_var)``, which folding needs (a BN built with ``track_running_stats``)."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("a BatchNorm without running statistics cannot be folded")
    return bn.running_mean, bn.running_var


def _bias(conv: nn.Conv2d) -> torch.Tensor:
    """The bias of a conv built with one."""
    if conv.bias is None:
        raise ValueError("the conv has no bias")
    return conv.bias


def conv_like(conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor) -> nn.Conv2d:
    """A Conv2d with ``conv``'s geometry holding ``weight`` and ``bias`` (a folded kernel)."""
    fused = nn.Conv2d(
        conv.in_channels, conv.out_channels, _pair(conv.kernel_size), _pair(conv.stride),
        conv.padding if isinstance(conv.padding, str) else _pair(conv.padding), _pair(conv.dilation), conv.groups,
        bias=True, device=weight.device, dtype=weight.dtype,
    )
    fused.weight.data.copy_(weight)
    _bias(fused).data.copy_(bias)
    return fused


def _pair(value: tuple[int, ...]) -> tuple[int, int]:
    """A 2d conv's ``(h, w)`` setting (torch types them as any-length tuples)."""
    return value[0], value[1]


class Conv2dBN(nn.Sequential):
    """Conv (no bias) + BatchNorm; keys ``c`` and ``bn`` as in the official code."""

    c: nn.Conv2d
    bn: nn.BatchNorm2d

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 1, stride: int = 1,
                 padding: int = 0, groups: int = 1, bn_weight_init: float = 1.0):
        super().__init__()
        self.add_module("c", nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(out_ch))
        nn.init.constant_(self.bn.weight, bn_weight_init)
        nn.init.constant_(self.bn.bias, 0)

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        weight, bias = fold_bn(self.c.weight, None, self.bn)
        return conv_like(self.c, weight, bias)


class BNLinear(nn.Sequential):
    """BatchNorm1d + Linear; keys ``bn`` and ``l``."""

    bn: nn.BatchNorm1d
    l: nn.Linear  # noqa: E741 - the official key

    def __init__(self, in_features: int, out_features: int, std: float = 0.02):
        super().__init__()
        self.add_module("bn", nn.BatchNorm1d(in_features))
        self.add_module("l", nn.Linear(in_features, out_features))
        nn.init.trunc_normal_(self.l.weight, std=std)
        nn.init.constant_(self.l.bias, 0)

    @torch.no_grad()
    def fuse(self) -> nn.Linear:
        bn, linear = self.bn, self.l
        mean, var = _running_stats(bn)
        scale = bn.weight / torch.sqrt(var + bn.eps)
        shift = bn.bias - mean * scale
        fused = nn.Linear(linear.in_features, linear.out_features, device=linear.weight.device)
        fused.weight.data.copy_(linear.weight * scale[None, :])
        fused.bias.data.copy_(linear.weight @ shift + linear.bias)
        return fused


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation with timm's ``SqueezeExcite(ch, 0.25)`` layout (``fc1``/``fc2``)."""

    def __init__(self, channels: int, rd_ratio: float = 0.25):
        super().__init__()
        reduced = max(8, int(channels * rd_ratio + 4) // 8 * 8)
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * scale.sigmoid()


class Residual(nn.Module):
    """``x + m(x)`` with optional per-sample stochastic depth (key ``m``)."""

    def __init__(self, m: nn.Module, drop: float = 0.0):
        super().__init__()
        self.m = m
        self.drop = drop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.drop > 0:
            keep = torch.rand(x.size(0), 1, 1, 1, device=x.device).ge_(self.drop).div(1 - self.drop)
            return x + self.m(x) * keep.detach()
        return x + self.m(x)


class RepVGGDW(nn.Module):
    """Depthwise 3x3 conv-BN + depthwise 1x1 conv + identity, then BN (structural re-param).

    ``legacy``: the paper's first version (RepViT-M1/M2/M3): the 1x1 branch is a
    conv-BN of its own (keys ``conv1.c`` / ``conv1.bn``) and there is no outer BN.
    """

    conv1: Conv2dBN | nn.Conv2d
    bn: nn.BatchNorm2d | nn.Identity

    def __init__(self, channels: int, legacy: bool = False):
        super().__init__()
        self.conv = Conv2dBN(channels, channels, 3, 1, 1, groups=channels)
        if legacy:
            self.conv1 = Conv2dBN(channels, channels, 1, groups=channels)
            self.bn = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(channels, channels, 1, 1, 0, groups=channels)
            self.bn = nn.BatchNorm2d(channels)
        self.dim = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x) + self.conv1(x) + x)

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        conv = self.conv.fuse()
        one = self.conv1.fuse() if isinstance(self.conv1, Conv2dBN) else self.conv1
        identity = F.pad(torch.ones_like(one.weight), [1, 1, 1, 1])
        weight = conv.weight + F.pad(one.weight, [1, 1, 1, 1]) + identity
        bias = _bias(conv) + _bias(one)
        if isinstance(self.bn, nn.BatchNorm2d):
            weight, bias = fold_bn(weight, bias, self.bn)
        return conv_like(conv, weight, bias)


def _ffn(channels: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(
        Conv2dBN(channels, hidden),
        nn.GELU(),
        Conv2dBN(hidden, channels, bn_weight_init=0.0),
    )


class RepViTBlock(nn.Module):
    """One RepViT block: ``channel_mixer(token_mixer(x))``.

    Stride 1: token mixer = RepVGGDW (+ SE); channel mixer = residual FFN.
    Downsample: token mixer = depthwise conv-BN with ``stride`` (+ SE) then a 1x1
    conv-BN to the new width; channel mixer = residual FFN at the new width.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int, use_se: bool, drop_path: float = 0.0,
                 downsample: bool = False, legacy: bool = False):
        super().__init__()
        se = SqueezeExcite(in_ch, 0.25) if use_se else nn.Identity()
        if downsample:
            self.token_mixer = nn.Sequential(
                Conv2dBN(in_ch, in_ch, 3, stride, 1, groups=in_ch),
                se,
                Conv2dBN(in_ch, out_ch, 1),
            )
        else:
            if in_ch != out_ch or stride != 1:
                raise ValueError("a stride-1 RepViT block keeps its width")
            self.token_mixer = nn.Sequential(RepVGGDW(in_ch, legacy), se)
        self.channel_mixer = Residual(_ffn(out_ch, 2 * out_ch), drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.channel_mixer(self.token_mixer(x))


class Classifier(nn.Module):
    """BN-Linear head, optionally with the distillation head (averaged at eval)."""

    def __init__(self, dim: int, num_classes: int, distillation: bool = False):
        super().__init__()
        self.classifier = BNLinear(dim, num_classes)
        self.distillation = distillation
        if distillation:
            self.classifier_dist = BNLinear(dim, num_classes)

    def forward(self, x: torch.Tensor):
        if not self.distillation:
            return self.classifier(x)
        logits, logits_dist = self.classifier(x), self.classifier_dist(x)
        if self.training:
            return logits, logits_dist
        return (logits + logits_dist) / 2

    @torch.no_grad()
    def fuse(self) -> nn.Linear:
        fused = self.classifier.fuse()
        if self.distillation:
            dist = self.classifier_dist.fuse()
            fused.weight.data.add_(dist.weight).div_(2)
            fused.bias.data.add_(dist.bias).div_(2)
        return fused


@dataclass(frozen=True)
class RepViTArch:
    """Widths and stride-1 block counts of the four stages.

    A downsample block sits before stages 2-4. Stride-1 blocks alternate SE
    on/off starting with on, except the last block before a downsample (no SE),
    exactly as the official cfg tables. ``legacy`` marks the paper's first
    version (M1/M2/M3), whose RepVGG-DW differs (see :class:`RepVGGDW`).
    """

    channels: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    legacy: bool = False

    def block_specs(self) -> list[tuple[int, int, int, bool, bool]]:
        """``(in_ch, out_ch, stage, use_se, downsample)`` for ``features[1:]``."""
        specs = []
        for stage, (width, depth) in enumerate(zip(self.channels, self.depths)):
            if stage > 0:
                specs.append((self.channels[stage - 1], width, stage, False, True))
            for j in range(depth):
                last_before_downsample = j == depth - 1 and stage < 3
                specs.append((width, width, stage, j % 2 == 0 and not last_before_downsample, False))
        return specs

    @property
    def stage_ends(self) -> tuple[int, int, int, int]:
        """Index in ``features`` of the last block of each stage."""
        ends, index = [], 0
        for stage, depth in enumerate(self.depths):
            index += depth + (stage > 0)
            ends.append(index)
        first, second, third, last = ends
        return first, second, third, last

    @property
    def det_out_indices(self) -> tuple[int, ...]:
        """The official Mask R-CNN taps (second-to-last block of stages 1-3, last of stage 4)."""
        e = self.stage_ends
        return (e[0] - 1, e[1] - 1, e[2] - 1, e[3])

    @property
    def seg_out_indices(self) -> tuple[int, ...]:
        """The official Semantic FPN taps (last block of every stage)."""
        return self.stage_ends

    @property
    def num_features(self) -> int:
        return self.stage_ends[-1] + 1


ARCHS: dict[str, RepViTArch] = {
    "m0_6": RepViTArch((40, 80, 160, 320), (2, 2, 9, 1)),
    "m0_9": RepViTArch((48, 96, 192, 384), (3, 3, 15, 2)),
    "m1_0": RepViTArch((56, 112, 224, 448), (3, 3, 15, 2)),
    "m1_1": RepViTArch((64, 128, 256, 512), (3, 3, 13, 2)),
    "m1_5": RepViTArch((64, 128, 256, 512), (5, 5, 25, 4)),
    "m2_3": RepViTArch((80, 160, 320, 640), (7, 7, 35, 2)),
    # the paper's first version (arXiv v1, timm ``repvit_m1/m2/m3``): M0.9 / M1.1 blocks and a deeper M1.1
    "m1": RepViTArch((48, 96, 192, 384), (3, 3, 15, 2), legacy=True),
    "m2": RepViTArch((64, 128, 256, 512), (3, 3, 13, 2), legacy=True),
    "m3": RepViTArch((64, 128, 256, 512), (5, 5, 19, 2), legacy=True),
}


def canonical_arch(arch: str) -> str:
    """``'repvit_m1_1'``, ``'M1.1'``, ``'m1.1'`` -> ``'m1_1'``; unknown names raise ``ValueError``."""
    name = arch.lower().strip()
    name = name.removeprefix("repvit_").removeprefix("repvit-").replace(".", "_")
    if name not in ARCHS:
        raise ValueError(f"unknown RepViT arch {arch!r}; choose one of {', '.join(ARCHS)}")
    return name


class RepViT(nn.Module):
    """The RepViT family.

    Args:
        arch: ``'m0_6' ... 'm2_3'``, or the first version's ``'m1'``, ``'m2'``, ``'m3'``
            (``'repvit_m1_1'`` and ``'M1.1'`` accepted).
        num_classes: classifier width; ``0`` builds no classifier (backbone use).
        distillation: add the distillation head of the official models.
        drop_path_rate: stochastic depth, rising linearly over the blocks.
        last_stride: stride of the last downsample (1 for the RepViT-SAM encoder).
    """

    def __init__(self, arch: str = "m1_1", num_classes: int = 1000, distillation: bool = False,
                 drop_path_rate: float = 0.0, last_stride: int = 2):
        super().__init__()
        self.arch_name = canonical_arch(arch)
        self.arch = ARCHS[self.arch_name]
        self.num_classes = num_classes
        self.last_stride = last_stride
        first = self.arch.channels[0]
        stem = nn.Sequential(Conv2dBN(3, first // 2, 3, 2, 1), nn.GELU(), Conv2dBN(first // 2, first, 3, 2, 1))
        specs = self.arch.block_specs()
        blocks: list[nn.Module] = [stem]
        for i, (in_ch, out_ch, stage, use_se, downsample) in enumerate(specs):
            stride = (last_stride if stage == 3 else 2) if downsample else 1
            drop = drop_path_rate * i / max(len(specs) - 1, 1)
            blocks.append(RepViTBlock(in_ch, out_ch, stride, use_se, drop, downsample, self.arch.legacy))
        self.features = nn.ModuleList(blocks)
        self.num_channels = self.arch.channels[-1]
        self.classifier = Classifier(self.num_channels, num_classes, distillation) if num_classes > 0 else None

    def feature_channels(self, indices: Iterable[int]) -> list[int]:
        """Channel count of the output of each ``features[i]``."""
        widths = [self.arch.channels[0]] + [spec[1] for spec in self.arch.block_specs()]
        return [widths[i] for i in indices]

    def feature_strides(self, indices: Iterable[int]) -> list[int]:
        """Output stride of each ``features[i]``: 4 after the stem, doubled by every downsample block."""
        strides = [4]
        for _, _, stage, _, downsample in self.arch.block_specs():
            strides.append(strides[-1] * ((self.last_stride if stage == 3 else 2) if downsample else 1))
        return [strides[i] for i in indices]

    def forward_intermediates(self, x: torch.Tensor, indices: Sequence[int]) -> list[torch.Tensor]:
        """Outputs of ``features[i]`` for each ``i`` in ``indices`` (official block indices)."""
        wanted = sorted({i % len(self.features) for i in indices})
        if len(wanted) != len(set(indices)) or any(not -len(self.features) <= i < len(self.features) for i in indices):
            raise ValueError(f"block indices {list(indices)} out of range 0..{len(self.features) - 1}")
        found: dict[int, torch.Tensor] = {}
        for i, block in enumerate(self.features[: wanted[-1] + 1]):
            x = block(x)
            if i in wanted:
                found[i] = x
        return [found[i % len(self.features)] for i in indices]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.features:
            x = block(x)
        return x

    def forward_head(self, x: torch.Tensor):
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return x if self.classifier is None else self.classifier(x)

    def forward(self, x: torch.Tensor):
        return self.forward_head(self.forward_features(x))


_FUSABLE = (Conv2dBN, BNLinear, RepVGGDW, Classifier)


def is_reparameterizable(model: nn.Module) -> bool:
    """Whether ``model`` holds RepViT parts that :func:`reparameterize` fuses (RepViT-SAM, EdgeSAM: yes; SAM's ViT,
    TinyViT, EfficientViT: no)."""
    return any(isinstance(m, _FUSABLE) for m in model.modules())


@torch.no_grad()
def reparameterize(model: nn.Module) -> nn.Module:
    """Fuse every Conv-BN, RepVGG-DW branch, BN-Linear and classifier head in place.

    Works on any module tree that contains RepViT parts (a classifier, an mm
    backbone, a SAM encoder). Returns ``model`` in eval mode. Never use mmcv's
    generic conv-bn fusion on RepViT: it folds RepVGGDW's outer BN wrongly.
    """
    model.eval()
    for name, child in list(model.named_children()):
        fuse = getattr(child, "fuse", None)
        if callable(fuse) and isinstance(child, _FUSABLE):
            setattr(model, name, fuse())
        else:
            reparameterize(child)
    return model
