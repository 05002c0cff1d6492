"""The state-dict layout (key -> shape) that THU-MIG/RepViT's ``model/repvit.py`` builds from a cfg table.

An oracle written from the official module structure, independent of ``repvit_plugins``: ``features.0`` is
the stem (``Conv2d_BN`` 3x3/2, GELU, ``Conv2d_BN`` 3x3/2); every cfg row ``(width, use_se, stride)`` adds
one ``RepViTBlock``; ``classifier`` holds two ``BN_Linear`` heads. The first version (``legacy``: M1/M2/M3)
has a conv-BN 1x1 branch in RepVGG-DW and no outer BN. The cfg rows below are the official tables' data
(the kernel 3, expansion 2 and activation columns are the same on every row and left out).
"""
from __future__ import annotations

from timm.layers import make_divisible

# model/repvit.py `repvit_m0_6` (current official code)
M0_6_CFG = [(40, 1, 1), (40, 0, 1), (80, 0, 2), (80, 1, 1), (80, 0, 1), (160, 0, 2), (160, 1, 1), (160, 0, 1),
            (160, 1, 1), (160, 0, 1), (160, 1, 1), (160, 0, 1), (160, 1, 1), (160, 0, 1), (160, 0, 1), (320, 0, 2),
            (320, 1, 1)]
# model/repvit.py `repvit_m3` (the first version's code)
M3_CFG = ([(64, 1, 1), (64, 0, 1), (64, 1, 1), (64, 0, 1), (64, 0, 1), (128, 0, 2), (128, 1, 1), (128, 0, 1),
           (128, 1, 1), (128, 0, 1), (128, 0, 1), (256, 0, 2)] + [(256, 1 - i % 2, 1) for i in range(18)]
          + [(256, 0, 1), (512, 0, 2), (512, 1, 1), (512, 0, 1)])


def _conv_bn(prefix: str, cin: int, cout: int, k: int, groups: int = 1) -> dict[str, tuple[int, ...]]:
    bn = {f"{prefix}bn.{n}": (cout,) for n in ("weight", "bias", "running_mean", "running_var")}
    return {f"{prefix}c.weight": (cout, cin // groups, k, k), **bn, f"{prefix}bn.num_batches_tracked": ()}


def _bn(prefix: str, n: int) -> dict[str, tuple[int, ...]]:
    return {**{f"{prefix}{k}": (n,) for k in ("weight", "bias", "running_mean", "running_var")},
            f"{prefix}num_batches_tracked": ()}


def _se(prefix: str, ch: int) -> dict[str, tuple[int, ...]]:
    rd = make_divisible(ch * 0.25, 8, round_limit=0.0)  # timm.layers.SqueezeExcite(ch, 0.25)
    return {f"{prefix}fc1.weight": (rd, ch, 1, 1), f"{prefix}fc1.bias": (rd,),
            f"{prefix}fc2.weight": (ch, rd, 1, 1), f"{prefix}fc2.bias": (ch,)}


def official_shapes(cfg: list[tuple[int, int, int]], legacy: bool = False,
                    num_classes: int = 1000) -> dict[str, tuple[int, ...]]:
    """Key -> shape of ``RepViT(cfgs, num_classes, distillation=True).state_dict()`` in the official code."""
    first = cfg[0][0]
    shapes = {**_conv_bn("features.0.0.", 3, first // 2, 3), **_conv_bn("features.0.2.", first // 2, first, 3)}
    cin = first
    for i, (cout, use_se, stride) in enumerate(cfg, 1):
        p = f"features.{i}."
        if stride == 2:
            shapes |= _conv_bn(f"{p}token_mixer.0.", cin, cin, 3, groups=cin)
            shapes |= _se(f"{p}token_mixer.1.", cin) if use_se else {}
            shapes |= _conv_bn(f"{p}token_mixer.2.", cin, cout, 1)
        else:
            shapes |= _conv_bn(f"{p}token_mixer.0.conv.", cin, cin, 3, groups=cin)
            if legacy:
                shapes |= _conv_bn(f"{p}token_mixer.0.conv1.", cin, cin, 1, groups=cin)
            else:
                shapes |= {f"{p}token_mixer.0.conv1.weight": (cin, 1, 1, 1), f"{p}token_mixer.0.conv1.bias": (cin,)}
                shapes |= _bn(f"{p}token_mixer.0.bn.", cin)
            shapes |= _se(f"{p}token_mixer.1.", cin) if use_se else {}
        shapes |= _conv_bn(f"{p}channel_mixer.m.0.", cout, 2 * cout, 1)
        shapes |= _conv_bn(f"{p}channel_mixer.m.2.", 2 * cout, cout, 1)
        cin = cout
    for head in ("classifier", "classifier_dist"):
        shapes |= _bn(f"classifier.{head}.bn.", cin)
        shapes |= {f"classifier.{head}.l.weight": (num_classes, cin), f"classifier.{head}.l.bias": (num_classes,)}
    return shapes
