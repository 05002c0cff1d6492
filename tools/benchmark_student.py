#!/usr/bin/env python
"""The trained student against its peers, side by side on the same photos in one run: seconds per image.

Paths, each in its own process (random weights; timings are real, accuracy is not):

- ``rtmdet-<arch>:<runtime>`` for each ``--archs`` RepViT RTMDet-Ins student (configs/rtmdet_ins) and runtime:
  ``unfused`` (fp32 eager), ``fused`` (RepViT fused with its own ``fuse()``, channels_last: what ``segment`` runs),
  ``bf16`` (fused + bf16 autocast; only where the CPU computes bf16 natively), ``onnx`` (onnxruntime, from
  ``tools/export_student_onnx.py``) and ``onnx-int8`` (static int8; faster, but not offered by ``segment``:
  no agreement could be shown on random weights);
- ``mask-rcnn-m1.1``: the former student, Mask R-CNN RepViT-M1.1 at 1333x800, fused;
- ``user-<arch>``: the user path, ``repvit-plugins segment FOLDER --detector mmdet --detector-model CFG
  --detector-checkpoint CKPT --masks detector`` (``.onnx`` with ``:onnx``) on a folder holding the photos
  ``--passes`` times, seconds per processed image from its ``summary.json`` (model loading excluded; image
  decoding, the first call per image shape and writing the annotated images included);
- ``yoloe-11s-seg``: the AGPL-3.0 peer, only when ultralytics is installed (never a dependency).
- ``--teacher``: also the open-vocabulary teacher, ``tools/benchmark_pipeline.py --paths balanced realtime``.

Every path sees the same images, ``--warmup`` untimed passes, then ``--passes`` timed ones; the row is the median
over all timed images, with the model's parameters. ``--plot`` draws latency against model size.

  python tools/benchmark_student.py --plot docs/images/student_latency.png --json student.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from repvit_plugins.bench.child import emit, run_child
from repvit_plugins.bench.student_models import CLASSES, build_student, onnx_file, student_files
from repvit_plugins.bench.timing import per_input_seconds

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
RUNTIMES = ("unfused", "fused", "bf16", "onnx", "onnx-int8")
RTMDET_CONFIG = ROOT / "configs" / "rtmdet_ins" / "rtmdet-ins_repvit-{arch}_8xb32-300e_coco.py"
MASK_RCNN_CONFIG = ROOT / "configs" / "mask_rcnn" / "mask-rcnn_repvit-m1.1_fpn_1x_coco.py"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="*", default=[str(ROOT / "demo" / "images")], help="images or folders")
    parser.add_argument("--archs", nargs="+", default=["m0_6", "m0_9", "m1_1"], help="RepViT variants of RTMDet-Ins")
    parser.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=RUNTIMES,
                        help="RTMDet-Ins runtimes to time for every arch")
    parser.add_argument("--user-archs", nargs="*", default=["m0_9"],
                        help="archs whose user path (`segment ... --masks detector`, torch and onnx) is timed")
    parser.add_argument("--no-mask-rcnn", action="store_true", help="skip the Mask R-CNN student")
    parser.add_argument("--no-peer", action="store_true", help="skip YOLOE-11s-seg even when ultralytics is installed")
    parser.add_argument("--teacher", action="store_true",
                        help="also time the teacher (tools/benchmark_pipeline.py balanced and realtime; minutes)")
    parser.add_argument("--max-detections", type=int, default=10, help="instances kept per image by every model")
    parser.add_argument("--warmup", type=int, default=1, help="untimed passes over the images per path")
    parser.add_argument("--passes", type=int, default=3, help="timed passes over the images per path")
    parser.add_argument("--threads", type=int, default=2, help="torch / onnxruntime intra-op threads")
    parser.add_argument("--work-dir", help="folder for the random models, exports and outputs (default: temp)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--plot", help="draw seconds per image against parameters into this PNG")
    parser.add_argument("--from-json", help="measure nothing: report (and --plot) the results of an earlier --json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def config_of(name: str) -> tuple[Path, str]:
    """The mmdet config of path ``name`` and its runtime."""
    if name == "mask-rcnn-m1.1":
        return MASK_RCNN_CONFIG, "fused"
    arch, runtime = name[len("rtmdet-"):].split(":")
    return Path(str(RTMDET_CONFIG).format(arch=arch.replace("_", "."))), runtime


def build(name: str, args: argparse.Namespace, images: list[np.ndarray]):
    """``(detect(image), parameters)`` of a path."""
    if name.startswith("yoloe"):
        from yoloe_peer import YoloePeer

        peer = YoloePeer(name, CLASSES, max_detections=args.max_detections)
        return peer.predict, sum(p.numel() for p in peer.model.model.parameters())
    return build_student(*config_of(name), Path(args.work_dir), args.max_detections, images)


def child(args: argparse.Namespace) -> None:
    from repvit_plugins.io import iter_image_paths, load_image
    from repvit_plugins.runtime.malloc_tuning import tune_allocator

    tune_allocator()
    torch.set_num_threads(args.threads)
    images = [load_image(p) for p in iter_image_paths(args.images)]
    with torch.inference_mode():
        detect, params = build(args.child, args, images)
        timed = per_input_seconds(detect, images, args.passes, args.warmup)
    emit({"seconds_per_image": statistics.median(s for s, _ in timed), "params": params,
          "instances": statistics.mean(len(found) for _, found in timed)})


def run_path(name: str, args: argparse.Namespace) -> dict:
    """Path ``name`` in a fresh process; ``{'error': why}`` when it fails."""
    result = run_child(Path(__file__).resolve(), [
        *args.images, "--child", name, "--work-dir", args.work_dir, "--max-detections", str(args.max_detections),
        "--warmup", str(args.warmup), "--passes", str(args.passes), "--threads", str(args.threads)])
    return {"error": result["failed"].strip().splitlines()[-1]} if "failed" in result else result


def user_path(arch: str, onnx: bool, args: argparse.Namespace) -> dict:
    """``repvit-plugins segment ... --masks detector``: seconds per processed image over ``--passes`` runs."""
    from repvit_plugins.io import iter_image_paths

    cfg, ckpt = student_files(Path(str(RTMDET_CONFIG).format(arch=arch.replace("_", "."))), Path(args.work_dir),
                              args.max_detections)
    model = ["--detector-model", str(onnx_file(cfg, ckpt, False, []))] if onnx else [
        "--detector", "mmdet", "--detector-model", str(cfg), "--detector-checkpoint", str(ckpt)]
    out = Path(args.work_dir) / f"user-{arch}{'-onnx' if onnx else ''}"
    (folder := out.with_name(out.name + "-photos")).mkdir(parents=True, exist_ok=True)  # photos --passes times over
    links = {folder / f"{r}_{p.name}": p for r in range(args.passes) for p in iter_image_paths(args.images)}
    for link in (link for link in links if not link.exists()):
        link.symlink_to(links[link].resolve())
    cmd = [sys.executable, "-m", "repvit_plugins", "segment", str(folder), "--prompt", ". ".join(CLASSES) + ".",
           "--out", str(out), *model, "--masks", "detector", "--box-threshold", "0", "--max-detections",
           str(args.max_detections), "--overwrite", "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        return {"error": (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]}
    seconds = json.loads((out / "summary.json").read_text())["seconds_per_image"]
    return {"seconds_per_image": seconds, "params": None, "instances": None}


def teacher(args: argparse.Namespace) -> dict[str, dict]:
    """The open-vocabulary teacher's seconds per image (``benchmark_pipeline.py --paths balanced realtime``)."""
    report = Path(args.work_dir) / "teacher.json"
    subprocess.run([sys.executable, str(ROOT / "tools" / "benchmark_pipeline.py"), *args.images, "--paths", "balanced",
                    "realtime", "--json", str(report), "--work-dir", str(Path(args.work_dir) / "teacher")], check=True)
    paths = json.loads(report.read_text())["paths"]
    return {f"teacher {name}": {"seconds_per_image": r["seconds_per_image"], "params": None, "instances": None}
            for name, r in paths.items()}


def paths(args: argparse.Namespace) -> list[str]:
    """The paths this run measures in child processes."""
    from yoloe_peer import missing_reason

    from repvit_plugins.runtime.speed import native_cpu_bf16

    names = [f"rtmdet-{arch}:{rt}" for arch in args.archs for rt in args.runtimes
             if rt != "bf16" or native_cpu_bf16()]
    names += [] if args.no_mask_rcnn else ["mask-rcnn-m1.1"]
    names += ["yoloe-11s-seg"] if not args.no_peer and missing_reason() is None else []
    return names


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child(args)
        return 0
    from yoloe_peer import INSTALL_COMMAND, missing_reason

    from repvit_plugins.bench.student_report import plot, report
    from repvit_plugins.runtime.speed import cpu_description

    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        report(saved["paths"], saved["cpu"], args)
        if args.plot:
            plot(saved["paths"], saved["cpu"], Path(args.plot))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        args.work_dir = args.work_dir or tmp
        Path(args.work_dir).mkdir(parents=True, exist_ok=True)
        results = {}
        for name in paths(args):
            results[name] = run_path(name, args)
            print(f"  {name}: {results[name]}", flush=True)
        for arch in args.user_archs:
            for onnx in (False, True):
                results[f"user-{arch}{':onnx' if onnx else ''}"] = user_path(arch, onnx, args)
        if args.teacher:
            results.update(teacher(args))
    cpu = cpu_description()
    report(results, cpu, args)
    if not args.no_peer and "yoloe-11s-seg" not in results:
        print(f"\nYOLOE-11s-seg skipped: {missing_reason()} ({INSTALL_COMMAND})")
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": cpu, "args": vars(args), "paths": results}, indent=2))
    if args.plot:
        plot(results, cpu, Path(args.plot))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
