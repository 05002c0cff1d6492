#!/usr/bin/env python
"""RepViT M0.6-M3 (fused) and the efficient backbones of its paper, side by side in one run.

Params and MACs at 224x224 (classifier) and at a detection input (backbone only), CPU latency at 224x224,
batch 1 (eager PyTorch; onnxruntime where the model exports) and the published ImageNet-1k top-1.
Writes results.json, results.md and latency_top1.png into --out.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from repvit_plugins.bench.backbone_benchmark import CONTENDERS, contender, markdown_table, measure, plot_latency_top1
from repvit_plugins.runtime.speed import cpu_description


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--models", nargs="*", default=[c.name for c in CONTENDERS],
                        help="contenders by name, or any timm model as timm:NAME")
    parser.add_argument("--size", type=int, default=224, help="classification input side")
    parser.add_argument("--det-size", type=int, nargs=2, default=(800, 1344), metavar=("H", "W"),
                        help="detection input for the backbone MACs (1333x800 padded to a multiple of 32)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs before timing")
    parser.add_argument("--iters", type=int, default=20, help="timed runs (the median is reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch and onnxruntime threads (default: torch's)")
    parser.add_argument("--no-onnx", action="store_true", help="skip the onnxruntime export and timing")
    parser.add_argument("--out", default="outputs/benchmark_backbones", help="folder for results and the plot")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    entries = [contender(name) for name in args.models]
    machine = f"{cpu_description()}, {torch.get_num_threads()} torch threads"
    print(f"{len(entries)} backbones, {args.size}x{args.size}, detection input {args.det_size[0]}x{args.det_size[1]}, "
          f"{machine}")
    rows = []
    for entry in entries:
        row = measure(entry, args.size, args.det_size, args.warmup, args.iters, onnx=not args.no_onnx)
        onnx = f"{row.onnx_ms:.1f} ms" if row.onnx_ms is not None else row.onnx_note
        print(f"{row.name:<22}{row.params_m:>7.2f} M{row.macs_g:>7.2f} G{row.det_macs_g:>8.1f} G"
              f"{row.eager_ms:>9.1f} ms  onnx {onnx}", flush=True)
        rows.append(row)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = [r.as_dict() for r in rows]
    (out / "results.json").write_text(json.dumps(dict(machine=machine, size=args.size, det_size=args.det_size,
                                                      results=results), indent=2))
    (out / "results.md").write_text(markdown_table(rows, args.size, args.det_size))
    plot = plot_latency_top1(rows, out / "latency_top1.png", f"CPU latency vs ImageNet top-1 ({machine})")
    print(f"wrote {out / 'results.md'}, {out / 'results.json'}, {plot}")
    return results


if __name__ == "__main__":
    main()
