"""Show every RepViT variant (parameters, MACs at 224x224, official taps) and check that fusion is exact here;
or, with ``--detectors``, the open-vocabulary detector zoo."""
from __future__ import annotations

import argparse

import torch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", nargs="*", default=None, help="variants to show (default: all)")
    parser.add_argument("--detectors", action="store_true",
                        help="print the detector zoo instead (backend, weights, input size, text encoder, licence, "
                             "published zero-shot AP) as a Markdown table")


def run(args: argparse.Namespace) -> int:
    if args.detectors:
        from ..grounding.detector_zoo import detector_table

        print(detector_table())
        return 0
    from ..bench.complexity import count_macs, count_params
    from ..bench.numeric_agreement import embedding_error
    from ..models import ARCHS, build_repvit, reparameterize

    print(f"{'model':<7}{'params':>9}{'fused':>9}{'MACs':>8}  {'det taps':<18}{'seg taps':<18}fused == unfused")
    worst = 0.0
    for arch in args.arch or list(ARCHS):
        torch.manual_seed(0)
        model = build_repvit(arch, distillation=True).eval()
        params = count_params(model)
        x = torch.randn(1, 3, 224, 224)
        with torch.no_grad():
            ref = model(x)
            fused = reparameterize(model)(x)
        err = embedding_error(fused, ref)
        worst = max(worst, err)
        spec = ARCHS[arch]
        print(f"{arch:<7}{params / 1e6:>8.2f}M{count_params(model) / 1e6:>8.2f}M{count_macs(model) / 1e9:>7.2f}G"
              f"  {str(spec.det_out_indices):<18}{str(spec.seg_out_indices):<18}{err:.1e} (mean |diff| / std)")
    ok = worst <= 1e-3
    print("fusion check:", "ok" if ok else "FAILED")
    return 0 if ok else 1
