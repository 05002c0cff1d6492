#!/usr/bin/env python
"""Throughput (images/s) of RepViT classifiers, unfused vs fused, measured side by side in one run.

Method of the official speed script: warm-up iterations, then timed iterations
on a fixed random batch (synchronizing the GPU when there is one).
"""
from __future__ import annotations

import argparse

import torch

from repvit_plugins.bench.classification import throughput
from repvit_plugins.models import ARCHS, build_repvit, reparameterize


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--arch", nargs="*", default=list(ARCHS), help="variants to measure")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    parser.add_argument("--batch-size", type=int, default=None, help="images per batch (default: 256 GPU, 8 CPU)")
    parser.add_argument("--size", type=int, default=224, help="input side")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up iterations (default: 50 GPU, 3 CPU)")
    parser.add_argument("--iters", type=int, default=None, help="timed iterations (default: 30 GPU, 5 CPU)")
    parser.add_argument("--channels-last", action="store_true", help="also run the fused model in channels_last")
    args = parser.parse_args(argv)
    gpu = args.device.startswith("cuda")
    batch_size = args.batch_size or (256 if gpu else 8)
    warmup, iters = args.warmup or (50 if gpu else 3), args.iters or (30 if gpu else 5)
    batch = torch.randn(batch_size, 3, args.size, args.size, device=args.device)
    print(f"device {args.device}, batch {batch_size}, {args.size}x{args.size}, threads {torch.get_num_threads()}")
    print(f"{'model':<7}{'unfused img/s':>15}{'fused img/s':>13}{'speed-up':>10}"
          + ("  channels_last" if args.channels_last else ""))
    for arch in args.arch:
        model = build_repvit(arch, distillation=True).to(args.device).eval()
        unfused = throughput(model, batch, warmup, iters)
        reparameterize(model)
        fused = throughput(model, batch, warmup, iters)
        line = f"{arch:<7}{unfused:>15.1f}{fused:>13.1f}{fused / unfused:>9.2f}x"
        if args.channels_last:
            model = model.to(memory_format=torch.channels_last)
            cl = throughput(model, batch.contiguous(memory_format=torch.channels_last), warmup, iters)
            line += f"  {cl:.1f} ({cl / unfused:.2f}x)"
        print(line, flush=True)


if __name__ == "__main__":
    main()
