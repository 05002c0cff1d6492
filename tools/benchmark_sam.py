#!/usr/bin/env python
"""CPU latency of RepViT-SAM, measured in one run on one machine (1024x1024, batch 1, random weights).

Encoder: unfused eager, fused, fused + channels_last, fused + channels_last +
torch.compile (with its one-off compile time), onnxruntime, onnxruntime static
int8 (calibrated on two demo photographs; its embedding error and the IoU of its
box masks with the float ones, on a third photograph). The encoder input is a real photograph
(demo/images/chelsea.jpg) preprocessed as SamPredictor does. Decoder (prompt
encoder + mask decoder + upscaling to the image, as ``predict_torch``): 1 box,
16 boxes in one call, 16 separate calls, for segment_anything's decoder, the
fast decoder and the onnxruntime decoder.

Each allocator setting runs in its own process: ``default`` (glibc as it
comes), ``mallopt`` (repvit_plugins.runtime.malloc_tuning.tune_allocator() at start-up) and
``env`` (MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000). Times are
medians over repeated runs after warm-up. The ONNX files are exported once, up
front, into --work-dir.

To read the ratios: the encoder is 95% 1x1 convolutions (about 113 GMACs at
1024), so on a small CPU the float paths are bounded by its GEMM throughput. The
report prints the encoder's MACs, the machine's measured float32 GEMM rate and
the time floor they imply.

``--zoo [NAME ...]`` measures the SAM model zoo instead (every entry when no name is
given; repvit_plugins.sam.zoo_benchmark): per entry, in its own process with the tuned
allocator, the encoder eager, fused (RepViT blocks only), channels_last, bf16 (where the
CPU has it natively), onnxruntime and static int8, or the reason a path does not apply;
the fast decoder's ms per box, params, MACs and the process's peak RSS. ``--tiny`` swaps
every entry for a small random-weight variant of its family
(repvit_plugins.models.sam_registry.smoke_variant) and runs them all in one process: a
smoke run of every path in about a minute, whose numbers mean nothing.

  python tools/benchmark_sam.py                  # everything, 3 allocator settings (about 10-15 min on 2 cores)
  python tools/benchmark_sam.py --quick          # a short smoke run (tuned allocator only)
  python tools/benchmark_sam.py --zoo            # the whole zoo at full size (ViT-H alone takes tens of minutes)
  python tools/benchmark_sam.py --zoo mobile_sam edge_sam --zoo-iters 5
  python tools/benchmark_sam.py --zoo --tiny     # smoke run of the zoo
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

from repvit_plugins.bench.numeric_agreement import embedding_error
from repvit_plugins.bench.timing import median_seconds as median_latency
from repvit_plugins.sam.zoo_benchmark import benchmark_boxes, box_mask_iou, on_embedding

DEMO_IMAGES = Path(__file__).resolve().parents[1] / "demo" / "images"
INPUT_IMAGE = "chelsea.jpg"  # the timed input; the other demo photographs calibrate int8
MODES = ("default", "mallopt", "env")
ENV_TUNING = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000"}
SKIPPABLE = ("compile", "onnx", "int8", "bf16")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="short run: 3 iterations, 1 warm-up, tuned allocator only, no compile")
    parser.add_argument("--allocator", choices=(*MODES, "all"), default=None,
                        help="allocator setting(s) to measure (default: all; with --quick: mallopt)")
    parser.add_argument("--threads", type=int, default=2, help="torch and onnxruntime intra-op threads")
    parser.add_argument("--iters", type=int, default=None, help="timed encoder runs (default 10; quick 3)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed warm-up runs (default 2; quick 1)")
    parser.add_argument("--zoo", nargs="*", default=None, metavar="NAME",
                        help="measure these SAM zoo entries (repvit_plugins.models.SAM_MODELS; none named: all) "
                             "instead of the RepViT-SAM table")
    parser.add_argument("--tiny", action="store_true",
                        help="with --zoo: small random-weight variants of every entry, all in one process (a smoke "
                             "run; the numbers mean nothing)")
    parser.add_argument("--zoo-iters", type=int, default=3, help="timed runs of each zoo encoder path (ViTs are slow)")
    parser.add_argument("--zoo-warmup", type=int, default=1, help="untimed runs before each zoo encoder path")
    parser.add_argument("--decoder-iters", type=int, default=None,
                        help="timed decoder runs of the many-box measurements (default 5; quick 3); "
                             "the 1-box measurement runs 4x as many")
    parser.add_argument("--arch", default="m2_3", help="RepViT variant of the encoder (m2_3 = RepViT-SAM)")
    parser.add_argument("--img-size", type=int, default=1024, help="encoder input side")
    parser.add_argument("--boxes", type=int, default=16, help="boxes for the many-boxes decoder measurements")
    parser.add_argument("--skip", nargs="*", default=[], choices=SKIPPABLE, help="measurements to leave out")
    parser.add_argument("--work-dir", default=None, help="folder for the exported ONNX files (default: a temp dir)")
    parser.add_argument("--json", default=None, help="also write all results to this JSON file")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--zoo-child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.skip = sorted(set(args.skip) | {"compile"})
    args.allocator = args.allocator or ("mallopt" if args.quick else "all")
    args.iters = args.iters or (3 if args.quick else 10)
    args.warmup = (1 if args.quick else 2) if args.warmup is None else args.warmup
    args.decoder_iters = args.decoder_iters or (3 if args.quick else 5)
    return args


# -- measuring (child process) ----------------------------------------------------------------------


def _demo_photos() -> tuple[np.ndarray | None, list[np.ndarray]]:
    """(timed input photograph, calibration photographs) from demo/images, or (None, []) without them."""
    from repvit_plugins.io import iter_image_paths, load_image

    if not (DEMO_IMAGES / INPUT_IMAGE).is_file():
        return None, []
    others = [p for p in iter_image_paths([DEMO_IMAGES]) if p.name != INPUT_IMAGE]
    return load_image(DEMO_IMAGES / INPUT_IMAGE), [load_image(p) for p in others]


def encoder_input(img_size: int) -> torch.Tensor:
    """The preprocessed demo photograph (a random tensor when demo/images is missing)."""
    from repvit_plugins.sam.quantize import encoder_inputs

    photo, _ = _demo_photos()
    if photo is None:
        return torch.randn(1, 3, img_size, img_size, generator=torch.Generator().manual_seed(0))
    return torch.from_numpy(encoder_inputs([photo], img_size)[0])


def gemm_gflops(threads: int, size: int = 2048, iters: int = 5) -> float:
    """Measured float32 GEMM rate (GFLOP/s) of this machine with ``threads`` threads: the float encoder's ceiling."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    seconds = median_latency(lambda: a @ b, iters, 2)
    return 2 * size**3 / seconds / 1e9


def _encoder_results(args, image: torch.Tensor, paths: dict) -> dict:
    import copy

    from repvit_plugins.bench.complexity import count_macs
    from repvit_plugins.models import build_repvit_sam, reparameterize
    from repvit_plugins.runtime.speed import AutocastModule, native_cpu_bf16

    results = {}
    torch.manual_seed(0)
    sam = build_repvit_sam(arch=args.arch, img_size=args.img_size)
    encoder = sam.image_encoder
    results["_macs"] = count_macs(reparameterize(copy.deepcopy(encoder)), tuple(image.shape))
    results["_gemm_gflops"] = gemm_gflops(args.threads)
    run = lambda model, x: (lambda: model(x))  # noqa: E731
    with torch.inference_mode():
        reference = encoder(image)
        results["encoder: unfused eager"] = {"s": median_latency(run(encoder, image), args.iters, args.warmup)}
        fused = reparameterize(copy.deepcopy(encoder))
        results["encoder: fused"] = {"s": median_latency(run(fused, image), args.iters, args.warmup)}
        fused_cl = copy.deepcopy(fused).to(memory_format=torch.channels_last)
        image_cl = image.contiguous(memory_format=torch.channels_last)
        out = fused_cl(image_cl)
        error = embedding_error(out, reference)
        results["encoder: fused + channels_last"] = {
            "s": median_latency(run(fused_cl, image_cl), args.iters, args.warmup), "error": error}
        bf16 = AutocastModule(fused_cl, "bf16")  # what --speed balanced runs where bf16 is native
        out = bf16(image_cl)
        results["encoder: fused + channels_last + bf16 autocast"] = {
            "s": median_latency(run(bf16, image_cl), args.iters, args.warmup), "error": embedding_error(out, reference),
            "mask_iou": box_mask_iou(sam, out, reference, benchmark_boxes(args.boxes, args.img_size)),
            "native": native_cpu_bf16()}
    if "compile" not in args.skip:
        compiled = torch.compile(fused_cl)
        with torch.inference_mode():
            start = time.perf_counter()
            compiled(image_cl)
            compile_s = time.perf_counter() - start
            results["encoder: fused + channels_last + torch.compile"] = {
                "s": median_latency(run(compiled, image_cl), args.iters, args.warmup), "compile_s": compile_s}
    if "onnx" not in args.skip:
        from repvit_plugins.sam.ort_backend import OrtImageEncoder

        for name, key in (("encoder: onnxruntime (fused)", "encoder"), ("encoder: onnxruntime int8", "int8")):
            if key not in paths:
                continue
            ort_encoder = OrtImageEncoder(paths[key], args.img_size, args.threads)
            out = ort_encoder(image)
            error = embedding_error(out, reference)
            results[name] = {"s": median_latency(run(ort_encoder, image), args.iters, args.warmup), "error": error,
                             "mask_iou": box_mask_iou(sam, out, reference,
                                                      benchmark_boxes(args.boxes, args.img_size))}
    return results


def _decoder_results(args, paths: dict) -> dict:
    from segment_anything import SamPredictor

    from repvit_plugins.models import build_repvit_sam
    from repvit_plugins.sam.predictor import FastSamPredictor

    torch.manual_seed(0)
    sam = build_repvit_sam(arch=args.arch, img_size=args.img_size)
    grid = args.img_size // 16
    embedding = torch.randn(1, 256, grid, grid)
    boxes = benchmark_boxes(args.boxes, args.img_size)
    predictors = {"segment_anything": SamPredictor(sam), "fast": FastSamPredictor(sam, decoder="fast")}
    if "onnx" not in args.skip and "decoder" in paths:
        from repvit_plugins.sam.ort_backend import OrtPromptDecoder

        predictors["onnxruntime"] = FastSamPredictor(sam, decoder=OrtPromptDecoder(paths["decoder"], args.threads))
    results = {}
    n = args.boxes
    for name, predictor in predictors.items():
        on_embedding(predictor, embedding, args.img_size)
        decode = lambda b, p=predictor: p.predict_torch(None, None, b, None, False)  # noqa: E731
        with torch.inference_mode():
            one = median_latency(lambda d=decode: d(boxes[:1]), args.decoder_iters * 4, args.warmup)
            batched = median_latency(lambda d=decode: d(boxes), args.decoder_iters, args.warmup)
            separate = median_latency(lambda d=decode: [d(boxes[i:i + 1]) for i in range(n)], args.decoder_iters,
                                      args.warmup)
        results[f"decoder {name}: 1 box"] = {"s": one}
        results[f"decoder {name}: {n} boxes, one call"] = {"s": batched, "per_box": batched / n}
        results[f"decoder {name}: {n} boxes, separate calls"] = {"s": separate, "per_box": separate / n}
    return results


def child(args) -> dict:
    from repvit_plugins.runtime.malloc_tuning import tune_allocator

    tuned = tune_allocator() if args.child == "mallopt" else args.child == "env"
    torch.set_num_threads(args.threads)
    paths = json.loads(os.environ.get("REPVIT_BENCH_PATHS", "{}"))
    image = encoder_input(args.img_size)
    results = {"_mode": args.child, "_tuned": tuned, "_threads": torch.get_num_threads(),
               "_load_before": os.getloadavg()[0]}
    results.update(_encoder_results(args, image, paths))
    results.update(_decoder_results(args, paths))
    results["_load_after"] = os.getloadavg()[0]
    return results


# -- orchestration (parent process) ----------------------------------------------------------------
def export_models(args, work: Path) -> dict:
    from repvit_plugins.models import build_repvit_sam
    from repvit_plugins.sam.onnx_export import export_decoder, export_encoder
    from repvit_plugins.sam.quantize import quantize_encoder_int8

    paths, timings = {}, {}
    if "onnx" in args.skip:
        return {"paths": paths, "timings": timings}
    torch.manual_seed(0)
    sam = build_repvit_sam(arch=args.arch, img_size=args.img_size)
    stem = f"{args.arch}_{args.img_size}"
    for key, export in (("encoder", export_encoder), ("decoder", export_decoder)):
        path = work / f"{stem}_{key}.onnx"
        if path.is_file():  # same seed, same weights: a file from an earlier run in --work-dir is reused
            print(f"reusing {path}", flush=True)
        else:
            start = time.perf_counter()
            export(sam, path)
            timings[f"export {key}"] = time.perf_counter() - start
            print(f"exported the {key} in {timings[f'export {key}']:.1f} s", flush=True)
        paths[key] = str(path)
    calibration = _demo_photos()[1] or [np.random.default_rng(i).integers(0, 256, (480, 640, 3), np.uint8)
                                        for i in range(2)]
    if "int8" not in args.skip:
        start = time.perf_counter()
        int8 = quantize_encoder_int8(paths["encoder"], work / f"{stem}_encoder.int8.onnx", calibration)
        paths["int8"] = str(int8)
        timings["quantize encoder (static int8)"] = time.perf_counter() - start
    return {"paths": paths, "timings": timings}


def _run_child(what: str, argv: list[str], env: dict[str, str]) -> dict:
    """This tool in a fresh process with ``argv``; its RESULT line, parsed."""
    command = [sys.executable, str(Path(__file__).resolve()), *argv]
    print(f"measuring {what} ...", flush=True)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise RuntimeError(f"the run measuring {what} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    print(f"  done in {time.perf_counter() - start:.0f} s", flush=True)
    return json.loads(lines[-1][len("RESULT "):])


def run_mode(mode: str, args, argv: list[str], paths: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ENV_TUNING}
    env["REPVIT_BENCH_PATHS"] = json.dumps(paths)
    if mode == "env":
        env.update(ENV_TUNING)
    if mode == "default":
        env["REPVIT_PLUGINS_NO_MALLOC_TUNING"] = "1"
    return _run_child(f"with the {mode} allocator", [*argv, "--child", mode], env)


# -- the SAM zoo (--zoo) -----------------------------------------------------------------------------
def zoo_child(args) -> dict:
    """Every entry of ``--zoo-child`` measured in this process (repvit_plugins.sam.zoo_benchmark)."""
    from repvit_plugins.runtime.malloc_tuning import tune_allocator
    from repvit_plugins.sam.zoo_benchmark import ZooRun, measure_entry

    tune_allocator()
    torch.set_num_threads(args.threads)
    photo, calibration = _demo_photos()
    skip = {{"onnx": "onnxruntime"}.get(name, name) for name in args.skip}
    run = ZooRun(iters=args.zoo_iters, warmup=args.zoo_warmup, decoder_iters=args.decoder_iters, boxes=args.boxes,
                 tiny=args.tiny, skip=frozenset(skip), work_dir=Path(args.work_dir),
                 own_process=len(args.zoo_child) == 1)
    results = {}
    for name in args.zoo_child:
        load = os.getloadavg()[0]
        results[name] = measure_entry(name, photo, calibration, run) | {
            "threads": torch.get_num_threads(), "load_before": load, "load_after": os.getloadavg()[0]}
    return results


def run_zoo(args, argv: list[str], work: Path) -> dict:
    """The zoo entries, each in its own process (all in one with ``--tiny``)."""
    from repvit_plugins.models.sam_registry import sam_model, sam_model_names

    names = args.zoo or sam_model_names()
    for name in names:
        sam_model(name)  # an unknown name fails here, before anything runs
    groups = [names] if args.tiny else [[name] for name in names]
    results = {}
    for group in groups:
        what = "the zoo's tiny variants" if args.tiny else group[0]
        try:
            results.update(_run_child(what, [*argv, "--work-dir", str(work), "--zoo-child", *group],
                                      dict(os.environ)))
        except RuntimeError as err:  # one entry that dies (e.g. killed for memory) does not lose the others
            print(f"  {err}", file=sys.stderr, flush=True)
            results.update({name: {"failed": str(err).splitlines()[0]} for name in group})
    return results


def zoo_report(results: dict, args) -> None:
    from repvit_plugins.runtime.speed import cpu_description
    from repvit_plugins.sam.zoo_benchmark import markdown_table

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


def _fmt(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1000:.0f} ms"


def report(results: dict[str, dict], args, exports: dict) -> None:
    modes = list(results)
    names = [k for k in results[modes[0]] if not k.startswith("_")]
    print(f"\nRepViT-SAM ({args.arch}) CPU latency, {args.img_size}x{args.img_size}, batch 1, "
          f"{results[modes[0]]['_threads']} threads, median of {args.iters} (decoder {args.decoder_iters}); "
          f"{os.cpu_count()} CPUs, load average " +
          ", ".join(f"{m} {r['_load_before']:.1f}->{r['_load_after']:.1f}" for m, r in results.items()) + "\n")
    print("| measurement | " + " | ".join(modes) + " |")
    print("|---|" + "---|" * len(modes))
    for name in names:
        cells = []
        for mode in modes:
            entry = results[mode].get(name)
            cell = _fmt(entry["s"]) if entry else "-"
            if entry and "per_box" in entry:
                cell += f" ({_fmt(entry['per_box'])}/box)"
            cells.append(cell)
        print(f"| {name} | " + " | ".join(cells) + " |")
    for mode in modes:
        r = results[mode]
        base = r["encoder: unfused eager"]["s"]
        print(f"\n[{mode} allocator] encoder speed-up over unfused eager:")
        for name in names:
            if name.startswith("encoder") and name != "encoder: unfused eager":
                extra = ""
                if "compile_s" in r[name]:
                    extra += f", one-off compile {r[name]['compile_s']:.1f} s"
                if "error" in r[name]:
                    extra += f", embedding error {r[name]['error']:.1e} (mean abs / std)"
                if "mask_iou" in r[name]:
                    extra += f", box-mask IoU with float {r[name]['mask_iou']:.3f}"
                print(f"  {name[9:]}: {base / r[name]['s']:.2f}x{extra}")
        best = _best_float_path(r, names)
        print(f"  best float RepViT-SAM path: {best[1][9:]} {base / best[0]:.2f}x")
        floor = 2 * r["_macs"] / (r["_gemm_gflops"] * 1e9)
        print(f"  compute floor: {r['_macs'] / 1e9:.0f} GMACs at this machine's {r['_gemm_gflops']:.0f} GFLOP/s "
              f"float32 GEMM = {_fmt(floor)}; the best float path runs at {floor / best[0]:.0%} of it, "
              f"unfused eager at {floor / base:.0%}")
        n = args.boxes
        for dec in ("segment_anything", "fast", "onnxruntime"):
            key = f"decoder {dec}: {n} boxes, one call"
            if key in r:
                sep = r[f"decoder {dec}: {n} boxes, separate calls"]
                print(f"  decoder {dec}: {_fmt(r[key]['per_box'])}/box in one call, {_fmt(sep['per_box'])}/box "
                      f"separately (one call / separate = {r[key]['s'] / sep['s']:.2f})")
        ref = r[f"decoder segment_anything: {n} boxes, separate calls"]["per_box"]
        for dec in ("fast", "onnxruntime"):
            key = f"decoder {dec}: {n} boxes, one call"
            if key in r:
                print(f"  per-box cost, {dec} in one call vs segment_anything one box at a time: "
                      f"{ref / r[key]['per_box']:.2f}x lower")
    if "default" in results and len(modes) > 1:
        base = results["default"]["encoder: unfused eager"]["s"]
        print("\nplain unfused eager (default allocator) vs the project's path (tuned allocator, as its entry points "
              "run):")
        for mode in modes[1:]:
            best = _best_float_path(results[mode], names)
            int8 = results[mode].get("encoder: onnxruntime int8")
            line = f"  {mode}: best float path {best[1][9:]} {base / best[0]:.2f}x"
            if int8:
                line += f"; int8 {base / int8['s']:.2f}x"
            print(line + " (across processes: default-allocator times vary between processes)")
        print("\nallocator: default time / tuned time (>1: tuning helps)")
        for mode in modes:
            if mode != "default":
                ratios = [results["default"][n]["s"] / results[mode][n]["s"] for n in names if n in results[mode]]
                print(f"  {mode}: median {statistics.median(ratios):.2f}x, range {min(ratios):.2f}-{max(ratios):.2f}x")
    for name, seconds in exports["timings"].items():
        print(f"{name}: {seconds:.1f} s")


def _best_float_path(r: dict, names: list[str]) -> tuple[float, str]:
    return min((r[n]["s"], n) for n in names if n.startswith("encoder") and "int8" not in n)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.child or args.zoo_child:
        print("RESULT " + json.dumps(child(args) if args.child else zoo_child(args)), flush=True)
        return 0
    from repvit_plugins.runtime.malloc_tuning import tune_allocator

    tune_allocator()  # the exports in this process only
    modes = MODES if args.allocator == "all" else (args.allocator,)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work_dir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.zoo is not None:
            results, exports = run_zoo(args, argv, work), {}
        else:
            exports = export_models(args, work)
            results = {mode: run_mode(mode, args, argv, exports["paths"]) for mode in modes}
    if args.zoo is not None:
        zoo_report(results, args)
    else:
        report(results, args, exports)
    if args.json:
        from repvit_plugins.runtime.speed import cpu_description

        Path(args.json).write_text(json.dumps({"args": vars(args), "cpu": cpu_description(), "exports": exports,
                                               "results": results}, indent=1))
    return int(any("failed" in r for r in results.values()))  # 1 when a zoo entry failed, as segment does


if __name__ == "__main__":
    sys.exit(main())
