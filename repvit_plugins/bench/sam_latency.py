"""RepViT-SAM's CPU latency table (``tools/benchmark_sam.py``): encoder paths, decoders, and the report.

The encoder paths are the SAM zoo benchmark's (:func:`repvit_plugins.sam.zoo_benchmark.encoder_paths`), plus
``torch.compile``; the decoders are segment_anything's, the fast one and onnxruntime's, on 1 box, many boxes in one
call and many in separate calls.
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .timing import median_seconds

__all__ = ["ENCODER_ROWS", "calibration_photos", "decoder_results", "encoder_input", "encoder_results",
           "demo_photos", "export_decoder", "report", "zoo_report"]

DEMO_IMAGES = Path(__file__).resolve().parents[2] / "demo" / "images"
INPUT_IMAGE = "chelsea.jpg"  # the timed input; the other demo photographs calibrate int8
ENCODER_ROWS = {"eager": "encoder: unfused eager", "fused": "encoder: fused",
                "channels_last": "encoder: fused + channels_last",
                "bf16": "encoder: fused + channels_last + bf16 autocast",
                "compile": "encoder: fused + channels_last + torch.compile",
                "onnxruntime": "encoder: onnxruntime (fused)", "int8": "encoder: onnxruntime int8"}
"""The table's row of each encoder path."""


def demo_photos() -> tuple[np.ndarray | None, list[np.ndarray]]:
    """(timed input photograph, calibration photographs) from demo/images, or (None, []) without them."""
    from ..io import iter_image_paths, load_image

    if not (DEMO_IMAGES / INPUT_IMAGE).is_file():
        return None, []
    others = [p for p in iter_image_paths([DEMO_IMAGES]) if p.name != INPUT_IMAGE]
    return load_image(DEMO_IMAGES / INPUT_IMAGE), [load_image(p) for p in others]


def calibration_photos() -> list[np.ndarray]:
    """The int8 calibration photographs (two random images without demo/images)."""
    return demo_photos()[1] or [np.random.default_rng(i).integers(0, 256, (480, 640, 3), np.uint8) for i in range(2)]


def encoder_input(img_size: int) -> torch.Tensor:
    """The preprocessed demo photograph (a random tensor when demo/images is missing)."""
    from ..sam.quantize import encoder_inputs

    photo, _ = demo_photos()
    if photo is None:
        return torch.randn(1, 3, img_size, img_size, generator=torch.Generator().manual_seed(0))
    return torch.from_numpy(encoder_inputs([photo], img_size)[0])


def gemm_gflops(size: int = 2048, iters: int = 5) -> float:
    """Measured float32 GEMM rate (GFLOP/s) of this machine: the float encoder's ceiling."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    return 2 * size**3 / median_seconds(lambda: a @ b, iters, 2) / 1e9


def encoder_results(args: argparse.Namespace, image: torch.Tensor) -> dict[str, Any]:
    """Every encoder path's row (seconds, error and box-mask IoU against unfused eager), MACs and the GEMM rate."""
    from ..bench.complexity import count_macs
    from ..models import build_repvit_sam, reparameterize
    from ..runtime.speed import native_cpu_bf16
    from ..sam.zoo_benchmark import ZooRun, encoder_paths

    torch.manual_seed(0)
    sam = build_repvit_sam(arch=args.arch, img_size=args.img_size)
    results: dict[str, Any] = {"_macs": count_macs(reparameterize(copy.deepcopy(sam.image_encoder)),
                                                   tuple(image.shape)), "_gemm_gflops": gemm_gflops()}
    skip = frozenset({"onnx": "onnxruntime"}.get(name, name) for name in args.skip)
    run = ZooRun(iters=args.iters, warmup=args.warmup, boxes=args.boxes, skip=skip, work_dir=Path(args.work_dir),
                 own_process=False)
    found = encoder_paths(sam, image, run, calibration_photos())
    for path, result in found["paths"].items():
        if "s" in result:
            results[ENCODER_ROWS[path]] = result | ({"native": native_cpu_bf16()} if path == "bf16" else {})
        if path == "bf16" and "compile" not in args.skip:  # the fused channels_last encoder, compiled
            results[ENCODER_ROWS["compile"]] = _compiled(sam.image_encoder, image, args)
    results.update({f"_{k}": v for k, v in found.items() if k.endswith("_prepare_s")})
    return results


def _compiled(encoder: torch.nn.Module, image: torch.Tensor, args: argparse.Namespace) -> dict[str, float]:
    compiled = torch.compile(encoder)
    image = image.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        start = time.perf_counter()
        compiled(image)
        compile_s = time.perf_counter() - start
        return {"s": median_seconds(lambda: compiled(image), args.iters, args.warmup), "compile_s": compile_s}


def _decoder_seconds(predictor: Any, boxes: torch.Tensor, n: int, iters: int,
                     warmup: int) -> tuple[float, float, float]:
    """Median seconds of ``predictor`` (embedding set) decoding 1 box, ``n`` boxes in one call and in ``n`` calls."""
    def decode(b: torch.Tensor) -> Any:
        return predictor.predict_torch(None, None, b, None, False)

    with torch.inference_mode():
        one = median_seconds(lambda: decode(boxes[:1]), iters * 4, warmup)
        batched = median_seconds(lambda: decode(boxes), iters, warmup)
        separate = median_seconds(lambda: [decode(boxes[i:i + 1]) for i in range(n)], iters, warmup)
    return one, batched, separate


def decoder_results(args: argparse.Namespace, decoder_onnx: str | None) -> dict[str, dict[str, float]]:
    """1 box, ``args.boxes`` boxes in one call and in separate calls, per decoder, on a random embedding."""
    from segment_anything import SamPredictor

    from ..models import build_repvit_sam
    from ..sam.predictor import FastSamPredictor
    from ..sam.zoo_benchmark import benchmark_boxes, on_embedding

    torch.manual_seed(0)
    sam = build_repvit_sam(arch=args.arch, img_size=args.img_size)
    grid = args.img_size // 16
    embedding = torch.randn(1, 256, grid, grid)
    boxes = benchmark_boxes(args.boxes, args.img_size)
    predictors = {"segment_anything": SamPredictor(sam), "fast": FastSamPredictor(sam, decoder="fast")}
    if decoder_onnx:
        from ..sam.ort_backend import OrtPromptDecoder

        predictors["onnxruntime"] = FastSamPredictor(sam, decoder=OrtPromptDecoder(decoder_onnx, args.threads))
    results: dict[str, dict[str, float]] = {}
    n, iters = args.boxes, args.decoder_iters
    for name, predictor in predictors.items():
        on_embedding(predictor, embedding, args.img_size)
        one, batched, separate = _decoder_seconds(predictor, boxes, n, iters, args.warmup)
        results[f"decoder {name}: 1 box"] = {"s": one}
        results[f"decoder {name}: {n} boxes, one call"] = {"s": batched, "per_box": batched / n}
        results[f"decoder {name}: {n} boxes, separate calls"] = {"s": separate, "per_box": separate / n}
    return results


def export_decoder(args: argparse.Namespace, work: Path) -> tuple[str, dict[str, float]]:
    """The ONNX prompt decoder in ``work`` (reused when there: same seed, same weights) and its export time."""
    from ..models import build_repvit_sam
    from ..sam.onnx_export import export_decoder as export

    path = work / f"{args.arch}_{args.img_size}_decoder.onnx"
    timings: dict[str, float] = {}
    if path.is_file():
        print(f"reusing {path}", flush=True)
        return str(path), timings
    torch.manual_seed(0)
    start = time.perf_counter()
    export(build_repvit_sam(arch=args.arch, img_size=args.img_size), path)
    timings["export decoder"] = time.perf_counter() - start
    print(f"exported the decoder in {timings['export decoder']:.1f} s", flush=True)
    return str(path), timings


def _fmt(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1000:.0f} ms"


def _best_float_path(r: dict, names: list[str]) -> tuple[float, str]:
    return min((r[n]["s"], n) for n in names if n.startswith("encoder") and "int8" not in n)


def _mode_lines(r: dict[str, Any], names: list[str], n: int) -> list[str]:
    """One allocator setting: encoder speed-ups, the compute floor, the decoders' per-box costs."""
    base = r["encoder: unfused eager"]["s"]
    lines = []
    for name in names:
        if name.startswith("encoder") and name != "encoder: unfused eager":
            extra = f", one-off compile {r[name]['compile_s']:.1f} s" if "compile_s" in r[name] else ""
            extra += f", embedding error {r[name]['error']:.1e} (mean abs / std)" if "error" in r[name] else ""
            extra += f", box-mask IoU with float {r[name]['mask_iou']:.3f}" if "mask_iou" in r[name] else ""
            lines.append(f"  {name[9:]}: {base / r[name]['s']:.2f}x{extra}")
    best = _best_float_path(r, names)
    lines.append(f"  best float RepViT-SAM path: {best[1][9:]} {base / best[0]:.2f}x")
    floor = 2 * r["_macs"] / (r["_gemm_gflops"] * 1e9)
    lines.append(f"  compute floor: {r['_macs'] / 1e9:.0f} GMACs at this machine's {r['_gemm_gflops']:.0f} GFLOP/s "
                 f"float32 GEMM = {_fmt(floor)}; the best float path runs at {floor / best[0]:.0%} of it, "
                 f"unfused eager at {floor / base:.0%}")
    for dec in ("segment_anything", "fast", "onnxruntime"):
        key = f"decoder {dec}: {n} boxes, one call"
        if key in r:
            sep = r[f"decoder {dec}: {n} boxes, separate calls"]
            lines.append(f"  decoder {dec}: {_fmt(r[key]['per_box'])}/box in one call, {_fmt(sep['per_box'])}/box "
                         f"separately (one call / separate = {r[key]['s'] / sep['s']:.2f})")
    ref = r[f"decoder segment_anything: {n} boxes, separate calls"]["per_box"]
    for dec in ("fast", "onnxruntime"):
        key = f"decoder {dec}: {n} boxes, one call"
        if key in r:
            lines.append(f"  per-box cost, {dec} in one call vs segment_anything one box at a time: "
                         f"{ref / r[key]['per_box']:.2f}x lower")
    return lines


def _allocator_lines(results: dict[str, dict[str, Any]], names: list[str]) -> list[str]:
    """The default allocator against the tuned ones."""
    modes = list(results)
    base = results["default"]["encoder: unfused eager"]["s"]
    lines = ["", "plain unfused eager (default allocator) vs the project's path (tuned allocator, as its entry points "
                 "run):"]
    for mode in modes[1:]:
        best = _best_float_path(results[mode], names)
        int8 = results[mode].get("encoder: onnxruntime int8")
        line = f"  {mode}: best float path {best[1][9:]} {base / best[0]:.2f}x"
        line += f"; int8 {base / int8['s']:.2f}x" if int8 else ""
        lines.append(line + " (across processes: default-allocator times vary between processes)")
    lines += ["", "allocator: default time / tuned time (>1: tuning helps)"]
    for mode in modes[1:]:
        ratios = [results["default"][n]["s"] / results[mode][n]["s"] for n in names if n in results[mode]]
        lines.append(f"  {mode}: median {statistics.median(ratios):.2f}x, range {min(ratios):.2f}-{max(ratios):.2f}x")
    return lines


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace, timings: dict[str, float]) -> None:
    """Print the table (a column per allocator setting) and what it means."""
    modes = list(results)
    names = [k for k in results[modes[0]] if not k.startswith("_")]
    print(f"\nRepViT-SAM ({args.arch}) CPU latency, {args.img_size}x{args.img_size}, batch 1, "
          f"{results[modes[0]]['_threads']} threads, median of {args.iters} (decoder {args.decoder_iters}); "
          f"{os.cpu_count()} CPUs, load average " +
          ", ".join(f"{m} {r['_load_before']:.1f}->{r['_load_after']:.1f}" for m, r in results.items()) + "\n")
    print("| measurement | " + " | ".join(modes) + " |")
    print("|---|" + "---|" * len(modes))
    for name in names:
        cells = [(_fmt(e["s"]) + (f" ({_fmt(e['per_box'])}/box)" if "per_box" in e else "")) if e else "-"
                 for e in (results[mode].get(name) for mode in modes)]
        print(f"| {name} | " + " | ".join(cells) + " |")
    for mode in modes:
        print(f"\n[{mode} allocator] encoder speed-up over unfused eager:")
        print("\n".join(_mode_lines(results[mode], names, args.boxes)))
    if "default" in results and len(modes) > 1:
        print("\n".join(_allocator_lines(results, names)))
    prepared = {k[1:]: v for r in results.values() for k, v in r.items() if k.endswith("_prepare_s")}
    for name, seconds in {**timings, **prepared}.items():
        print(f"{name}: {seconds:.1f} s")


def zoo_report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    """Print the SAM zoo table (``--zoo``) and the entries that failed."""
    from ..runtime.speed import cpu_description
    from ..sam.zoo_benchmark import markdown_table

    failed = {name: r["failed"] for name, r in results.items() if "failed" in r}
    results = {name: r for name, r in results.items() if name not in failed}
    if not results:
        raise SystemExit("every zoo entry failed: " + "; ".join(f"{n}: {why}" for n, why in failed.items()))
    first = next(iter(results.values()))
    print(f"\nSAM zoo{' (tiny random-weight variants: a smoke run, the numbers mean nothing)' if args.tiny else ''}, "
          f"random weights, batch 1, {first['threads']} threads, median of {args.zoo_iters} after "
          f"{args.zoo_warmup} warm-up; decoder: the fast decoder, {args.boxes} boxes in one call")
    print(f"CPU: {cpu_description()}; load average " +
          ", ".join(f"{name} {r['load_before']:.1f}->{r['load_after']:.1f}" for name, r in results.items()) + "\n")
    print(markdown_table(results))
    for name, why in failed.items():
        print(f"- {name}: {why}")
