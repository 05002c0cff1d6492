#!/usr/bin/env python
"""Print parameters and MACs of every RepViT variant, unfused and fused (paper: fused, 224x224)."""
from __future__ import annotations

import argparse

from repvit_plugins.bench.complexity import repvit_complexity
from repvit_plugins.models import ARCHS


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", nargs="*", default=list(ARCHS), help="variants to measure (default: all)")
    parser.add_argument("--size", type=int, default=224, help="square input side in pixels (default: 224)")
    parser.add_argument("--no-distillation", action="store_true",
                        help="count a single classifier head before fusion (default: the official two heads)")
    args = parser.parse_args(argv)
    print(f"{'model':<8}{'params (M)':>12}{'fused (M)':>12}{'MACs (G)':>11}{'fused MACs (G)':>16}"
          f"   @ {args.size}x{args.size}")
    for arch in args.arch:
        counts = repvit_complexity(arch, args.size, distillation=not args.no_distillation)
        print(f"{arch:<8}{counts['params'] / 1e6:>12.2f}{counts['fused_params'] / 1e6:>12.2f}"
              f"{counts['macs'] / 1e9:>11.2f}{counts['fused_macs'] / 1e9:>16.2f}")


if __name__ == "__main__":
    main()
