"""The student benchmark's report: a Markdown table against YOLOE-11s-seg and a latency-vs-size plot."""
from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["plot", "report"]


def report(results: dict[str, dict], cpu: str, args: argparse.Namespace) -> None:
    """Print one row per path: parameters, seconds per image, the ratio to YOLOE-11s-seg, instances."""
    peer = results.get("yoloe-11s-seg", {}).get("seconds_per_image")
    print(f"\nStudents and peers, {args.passes} timed pass(es) over the photos, --max-detections "
          f"{args.max_detections}, {args.threads} threads; {cpu}\n")
    print("| path | params | s / image | vs YOLOE-11s-seg | instances |\n|---|---|---|---|---|")
    for name, r in results.items():
        if "error" in r:
            print(f"| {name} | - | failed: {r['error']} | - | - |")
            continue
        s = r["seconds_per_image"]
        params = f"{r['params'] / 1e6:.1f} M" if r.get("params") else "-"
        ratio = f"{s / peer:.2f}x" if peer else "-"
        instances = "-" if r.get("instances") is None else f"{r['instances']:.1f}"
        print(f"| {name} | {params} | **{s:.3f}** | {ratio} | {instances} |")


def plot(results: dict[str, dict], cpu: str, target: Path) -> None:
    """Seconds per image against parameters (millions): a line per RTMDet-Ins runtime, a point per other model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    series: dict[str, list[tuple[float, float]]] = {}
    for name, r in results.items():
        if not r.get("params") or "seconds_per_image" not in r:
            continue
        x, y = r["params"] / 1e6, r["seconds_per_image"]
        if name.startswith("rtmdet-"):
            series.setdefault("RTMDet-Ins RepViT, " + name.split(":")[1], []).append((x, y))
        else:
            ax.scatter(x, y, s=40, marker="s" if name.startswith("yoloe") else "^", label=name, zorder=3)
    for label, points in series.items():
        xs, ys = zip(*sorted(points))
        ax.plot(xs, ys, marker="o", label=label)
    ax.set_yscale("log")
    ax.set_xlabel("parameters (millions; RTMDet-Ins points: M0.6, M0.9, M1.1)")
    ax.set_ylabel("seconds per image (log)")
    ax.set_title(f"Students vs YOLOE-11s-seg, random weights, 640 input\n{cpu.split(';')[0]}", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=120)
