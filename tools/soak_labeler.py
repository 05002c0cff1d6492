#!/usr/bin/env python
"""Memory soak of the batch labeller: label many small synthetic photos, sample the process's RSS, report growth.

Takes every flag of ``repvit-plugins segment`` (models, thresholds, outputs) plus the soak's own; the
photos (coloured squares and discs on noise) are written into the INPUT folder (kept for reruns):

  python tools/soak_labeler.py soak_photos/ --images 500 --out soak/ --prompt "a square. a disc." --coco --png-masks

Growth is measured from the end of the warm-up (``--warmup`` of the images, default 10 %) to the end,
on the median RSS of the last tenth of the samples; writes ``<out>/memory.json``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from pathlib import Path

import numpy as np


def parse_args(argv=None) -> argparse.Namespace:
    from repvit_plugins.commands import segment

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    soak = parser.add_argument_group("soak")
    soak.add_argument("--images", type=int, default=500, help="number of synthetic photos")
    soak.add_argument("--size", type=int, default=160, help="side of the photos (pixels)")
    soak.add_argument("--warmup", type=float, default=0.1, help="share of the images before the baseline")
    soak.add_argument("--interval", type=float, default=0.25, help="seconds between RSS samples")
    segment.add_arguments(parser)
    return parser.parse_args(argv)


def rss_bytes() -> int:
    """Resident set size of this process (Linux ``/proc``)."""
    import os

    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def write_photos(folder: Path, count: int, size: int) -> Path:
    """``count`` deterministic photos of one or two shapes each."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        path = folder / f"{index:05d}.jpg"
        if path.exists():
            continue
        rng = np.random.default_rng(index)
        image = Image.fromarray(rng.integers(90, 160, (size, size, 3), dtype=np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(1 + index % 2):
            x, y = rng.integers(0, size // 2, 2)
            r = int(rng.integers(size // 8, size // 4))
            colour = tuple(int(c) for c in rng.integers(0, 255, 3))
            (draw.rectangle if rng.random() < 0.5 else draw.ellipse)([x, y, x + 2 * r, y + 2 * r], fill=colour)
        image.save(path, quality=90)
    return folder


def label(args: argparse.Namespace) -> int:
    """Run the labelling job as ``segment`` does; its exit code (2: an error the message explains)."""
    import sys

    from repvit_plugins.commands import segment
    from repvit_plugins.jobs.labelling import label_images, labelling_errors

    try:
        done = label_images(**segment.job_arguments(args, segment.outputs_of(args)))
    except labelling_errors() as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return segment.report(done, args.out)


def main(argv=None) -> dict:
    args = parse_args(argv)
    out = Path(args.out)
    photos = write_photos(Path(args.inputs[0]), args.images, args.size)
    args.inputs = [str(photos)]
    samples: list[tuple[float, int, int]] = []  # seconds, images done, rss
    stop = threading.Event()

    def sample() -> None:
        start = time.perf_counter()
        while not stop.is_set():
            done = len(list((out / "records").glob("*.json"))) if (out / "records").is_dir() else 0
            samples.append((time.perf_counter() - start, done, rss_bytes()))
            stop.wait(args.interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = label(args)
    stop.set()
    sampler.join()
    warm = next((s for s in samples if s[1] >= args.warmup * args.images), samples[-1])
    tail = [s[2] for s in samples[-max(1, len(samples) // 10):]]
    report = {
        "images": args.images, "exit_code": code, "samples": len(samples),
        "rss_mb_after_warmup": round(warm[2] / 2**20, 1), "rss_mb_end": round(statistics.median(tail) / 2**20, 1),
        "rss_mb_max": round(max(s[2] for s in samples) / 2**20, 1),
        "seconds": round(samples[-1][0], 1),
    }
    report["growth_after_warmup"] = round(report["rss_mb_end"] / report["rss_mb_after_warmup"] - 1, 4)
    report["curve_mb"] = [(round(t, 1), n, round(r / 2**20, 1)) for t, n, r in samples[::max(1, len(samples) // 40)]]
    (out / "memory.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "curve_mb"}))
    return report


if __name__ == "__main__":
    main()
