#!/usr/bin/env python
"""Print parameters and MACs of every RepViT variant, unfused and fused (paper: fused, 224x224)."""
from __future__ import annotations

import argparse

from repvit_plugins.complexity import count_macs, count_params
from repvit_plugins.models import ARCHS, build_repvit, reparameterize


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", nargs="*", default=list(ARCHS), help="variants to measure (default: all)")
    parser.add_argument("--size", type=int, default=224, help="square input side in pixels (default: 224)")
    parser.add_argument("--no-distillation", action="store_true",
                        help="count a single classifier head before fusion (default: the official two heads)")
    args = parser.parse_args(argv)
    print(f"{'model':<8}{'params (M)':>12}{'fused (M)':>12}{'MACs (G)':>11}{'fused MACs (G)':>16}   @ {args.size}x{args.size}")
    for arch in args.arch:
        model = build_repvit(arch, distillation=not args.no_distillation).eval()
        size = (1, 3, args.size, args.size)
        params, macs = count_params(model), count_macs(model, size)
        reparameterize(model)
        print(f"{arch:<8}{params / 1e6:>12.2f}{count_params(model) / 1e6:>12.2f}"
              f"{macs / 1e9:>11.2f}{count_macs(model, size) / 1e9:>16.2f}")


if __name__ == "__main__":
    main()
