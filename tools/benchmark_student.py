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
- ``--teacher``: also runs ``tools/benchmark_pipeline.py --paths balanced realtime`` (the open-vocabulary
  teacher) on the same photos and reports its seconds per image.

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
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
RUNTIMES = ("unfused", "fused", "bf16", "onnx", "onnx-int8")
CLASSES = ("cat", "cup", "person")
RTMDET_CONFIG = ROOT / "configs" / "rtmdet_ins" / "rtmdet-ins_repvit-{arch}_8xb32-300e_coco.py"
MASK_RCNN_CONFIG = ROOT / "configs" / "mask_rcnn" / "mask-rcnn_repvit-m1.1_fpn_1x_coco.py"


def parse_args(argv=None) -> argparse.Namespace:
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


# -- models -------------------------------------------------------------------------------------------
def student_files(config: Path, work: Path, max_detections: int) -> tuple[Path, Path]:
    """A config for the prompt's classes (no ImageNet download) and a random checkpoint whose scores pass."""
    from mmdet.registry import MODELS
    from mmengine.config import Config

    import repvit_plugins.mm  # noqa: F401 - registers RepViT

    cfg_path, ckpt_path = work / f"{config.stem}.py", work / f"{config.stem}.pth"
    if ckpt_path.is_file():
        return cfg_path, ckpt_path
    n = len(CLASSES)
    rtmdet = "rtmdet" in config.name
    head = (dict(bbox_head=dict(num_classes=n)) if rtmdet else
            dict(roi_head=dict(bbox_head=dict(num_classes=n), mask_head=dict(num_classes=n))))
    test = dict(max_per_img=max_detections) if rtmdet else dict(rcnn=dict(max_per_img=max_detections))
    cfg_path.write_text(f"_base_ = {str(config)!r}\nmodel = dict(backbone=dict(init_cfg=None), test_cfg={test!r}, "
                        f"**{head!r})\n")
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(str(cfg_path)).model).eval()
    for name, param in model.named_parameters():  # class biases at 0: random scores near 0.5, not 0.01
        if name.endswith("bias") and ("rtm_cls" in name or "fc_cls" in name):
            param.data.zero_()
    torch.save({"state_dict": model.state_dict(), "meta": {"dataset_meta": {"classes": CLASSES}}}, ckpt_path)
    return cfg_path, ckpt_path


def onnx_file(cfg: Path, ckpt: Path, int8: bool, images: list[np.ndarray]) -> Path:
    from repvit_plugins.mm.student_export import export_student, load_student, quantize_student_int8

    path = ckpt.with_name(f"{ckpt.stem}.onnx")
    if not path.is_file():
        export_student(load_student(str(cfg), str(ckpt)), path)
    if not int8:
        return path
    quantized = ckpt.with_name(ckpt.stem + "_int8.onnx")
    if not quantized.is_file():
        quantize_student_int8(path, quantized, images[:3])
    return quantized


def build(name: str, args, images: list[np.ndarray]):
    """``(detect(image), parameters)`` of a path."""
    from repvit_plugins.grounding import build_detector
    from repvit_plugins.options import PipelineOptions

    work = Path(args.work_dir)
    if name.startswith("yoloe"):
        from yoloe_peer import YoloePeer

        peer = YoloePeer(name, CLASSES, max_detections=args.max_detections)
        return peer.predict, sum(p.numel() for p in peer.model.model.parameters())
    options = PipelineOptions(box_threshold=0.0, max_detections=args.max_detections, masks="detector")
    if name == "mask-rcnn-m1.1":
        kind, runtime = MASK_RCNN_CONFIG, "fused"
    else:
        arch, runtime = name[len("rtmdet-"):].split(":")
        kind = Path(str(RTMDET_CONFIG).format(arch=arch.replace("_", ".")))
    cfg, ckpt = student_files(kind, work, args.max_detections)
    if runtime.startswith("onnx"):
        detector = build_detector("mmdet", model=str(onnx_file(cfg, ckpt, runtime == "onnx-int8", images)),
                                  options=options)
    else:
        from repvit_plugins.grounding.mmdet_closed_set import MMDetClosedSetDetector

        detector = MMDetClosedSetDetector(cfg, ckpt, fuse=runtime != "unfused", channels_last=runtime != "unfused",
                                          precision="bf16" if runtime == "bf16" else "fp32", options=options)
    prompt = ". ".join(CLASSES) + "."
    return (lambda image: detector.detect([image], prompt)[0]), trained_params(ckpt)


def trained_params(checkpoint: Path) -> int:
    """Parameters of the model as trained (before fusing), from its checkpoint."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    return sum(t.numel() for key, t in state.items() if not key.endswith(("running_mean", "running_var",
                                                                           "num_batches_tracked")))


def child(args) -> None:
    from repvit_plugins.io import iter_image_paths, load_image
    from repvit_plugins.runtime.malloc_tuning import tune_allocator

    tune_allocator()
    torch.set_num_threads(args.threads)
    images = [load_image(p) for p in iter_image_paths(args.images)]
    with torch.inference_mode():
        detect, params = build(args.child, args, images)
        for _ in range(args.warmup):
            for image in images:
                detect(image)
        seconds, found = [], []
        for _ in range(args.passes):
            for image in images:
                start = time.perf_counter()
                result = detect(image)
                seconds.append(time.perf_counter() - start)
                found.append(len(result))
    print("RESULT " + json.dumps({"seconds_per_image": statistics.median(seconds), "params": params,
                                  "instances": statistics.mean(found)}), flush=True)


# -- orchestration ------------------------------------------------------------------------------------
def run_child(name: str, args) -> dict:
    argv = [sys.executable, str(Path(__file__).resolve()), *args.images, "--child", name, "--work-dir", args.work_dir,
            "--max-detections", str(args.max_detections), "--warmup", str(args.warmup), "--passes", str(args.passes),
            "--threads", str(args.threads)]
    done = subprocess.run(argv, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        return {"error": (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]}
    return json.loads(lines[-1][len("RESULT "):])


def user_path(arch: str, onnx: bool, args) -> dict:
    """``repvit-plugins segment ... --masks detector``: seconds per processed image over ``--passes`` runs."""
    cfg, ckpt = student_files(Path(str(RTMDET_CONFIG).format(arch=arch.replace("_", "."))), Path(args.work_dir),
                              args.max_detections)
    model = ["--detector-model", str(onnx_file(cfg, ckpt, False, []))] if onnx else [
        "--detector", "mmdet", "--detector-model", str(cfg), "--detector-checkpoint", str(ckpt)]
    out = Path(args.work_dir) / f"user-{arch}{'-onnx' if onnx else ''}"
    folder = out.with_name(out.name + "-photos")  # the photos --passes times over, in one run of segment
    folder.mkdir(parents=True, exist_ok=True)
    from repvit_plugins.io import iter_image_paths

    for round_ in range(args.passes):
        for photo in iter_image_paths(args.images):
            link = folder / f"{round_}_{photo.name}"
            if not link.exists():
                link.symlink_to(photo.resolve())
    cmd = [sys.executable, "-m", "repvit_plugins", "segment", str(folder), "--prompt", ". ".join(CLASSES) + ".",
           "--out", str(out), *model, "--masks", "detector", "--box-threshold", "0", "--max-detections",
           str(args.max_detections), "--overwrite", "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        return {"error": (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]}
    seconds = json.loads((out / "summary.json").read_text())["seconds_per_image"]
    return {"seconds_per_image": seconds, "params": None, "instances": None}


def teacher(args) -> dict[str, dict]:
    report = Path(args.work_dir) / "teacher.json"
    subprocess.run([sys.executable, str(ROOT / "tools" / "benchmark_pipeline.py"), *args.images, "--paths", "balanced",
                    "realtime", "--json", str(report), "--work-dir", str(Path(args.work_dir) / "teacher")], check=True)
    paths = json.loads(report.read_text())["paths"]
    return {f"teacher {name}": {"seconds_per_image": r["seconds_per_image"], "params": None, "instances": None}
            for name, r in paths.items()}


def paths(args) -> list[str]:
    from yoloe_peer import missing_reason

    from repvit_plugins.runtime.speed import native_cpu_bf16

    names = [f"rtmdet-{arch}:{rt}" for arch in args.archs for rt in args.runtimes
             if rt != "bf16" or native_cpu_bf16()]
    names += [] if args.no_mask_rcnn else ["mask-rcnn-m1.1"]
    if not args.no_peer:
        names += ["yoloe-11s-seg"] if missing_reason() is None else []
    return names


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        child(args)
        return 0
    from yoloe_peer import INSTALL_COMMAND, missing_reason

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
            results[name] = run_child(name, args)
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


def report(results: dict[str, dict], cpu: str, args) -> None:
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


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
