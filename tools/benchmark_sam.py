#!/usr/bin/env python
"""CPU latency of RepViT-SAM, measured in one run on one machine (1024x1024, batch 1, random weights).

Encoder (the SAM zoo benchmark's paths, repvit_plugins.sam.zoo_benchmark): unfused eager, fused,
fused + channels_last, bf16 autocast (where the CPU has native bf16), fused + channels_last +
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
import sys
import tempfile
import time
from pathlib import Path

import torch

from repvit_plugins.bench.child import emit, run_child

MODES = ("default", "mallopt", "env")
ENV_TUNING = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000"}
SKIPPABLE = ("compile", "onnx", "int8", "bf16")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
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


def child(args: argparse.Namespace) -> dict:
    """One allocator setting's measurements, in this (fresh) process."""
    from repvit_plugins.bench.sam_latency import decoder_results, encoder_input, encoder_results
    from repvit_plugins.runtime.malloc_tuning import tune_allocator

    tuned = tune_allocator() if args.child == "mallopt" else args.child == "env"
    torch.set_num_threads(args.threads)
    results = {"_mode": args.child, "_tuned": tuned, "_threads": torch.get_num_threads(),
               "_load_before": os.getloadavg()[0]}
    results.update(encoder_results(args, encoder_input(args.img_size)))
    results.update(decoder_results(args, os.environ.get("REPVIT_BENCH_DECODER") or None))
    return results | {"_load_after": os.getloadavg()[0]}


def zoo_child(args: argparse.Namespace) -> dict:
    """Every entry of ``--zoo-child`` measured in this process (repvit_plugins.sam.zoo_benchmark)."""
    from repvit_plugins.bench.sam_latency import demo_photos
    from repvit_plugins.runtime.malloc_tuning import tune_allocator
    from repvit_plugins.sam.zoo_benchmark import ZooRun, measure_entry

    tune_allocator()
    torch.set_num_threads(args.threads)
    photo, calibration = demo_photos()
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


def _measure(what: str, argv: list[str], env: dict[str, str] | None = None) -> dict:
    print(f"measuring {what} ...", flush=True)
    start = time.perf_counter()
    result = run_child(Path(__file__).resolve(), argv, env)
    print(f"  failed: {result['failed']}" if "failed" in result else f"  done in {time.perf_counter() - start:.0f} s",
          file=sys.stderr if "failed" in result else sys.stdout, flush=True)
    return result


def run_mode(mode: str, argv: list[str], decoder: str | None) -> dict:
    """One allocator setting in a fresh process."""
    env = {"REPVIT_BENCH_DECODER": decoder or "", **(ENV_TUNING if mode == "env" else {})}
    if mode == "default":
        env["REPVIT_PLUGINS_NO_MALLOC_TUNING"] = "1"
    result = _measure(f"with the {mode} allocator", [*argv, "--child", mode], env)
    if "failed" in result:
        raise SystemExit(f"the run measuring the {mode} allocator failed: {result['failed']}")
    return result


def run_zoo(args: argparse.Namespace, argv: list[str]) -> dict:
    """The zoo entries, each in its own process (all in one with ``--tiny``); one that dies is reported, not fatal."""
    from repvit_plugins.models.sam_registry import sam_model, sam_model_names

    names = args.zoo or sam_model_names()
    for name in names:
        sam_model(name)  # an unknown name fails here, before anything runs
    results = {}
    for group in [names] if args.tiny else [[name] for name in names]:
        result = _measure("the zoo's tiny variants" if args.tiny else group[0], [*argv, "--zoo-child", *group])
        failed = "failed" in result
        results.update({name: {"failed": result["failed"].splitlines()[0]} for name in group} if failed else result)
    return results


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.child or args.zoo_child:
        emit(child(args) if args.child else zoo_child(args))
        return 0
    from repvit_plugins.bench.sam_latency import export_decoder, report, zoo_report
    from repvit_plugins.runtime.malloc_tuning import tune_allocator
    from repvit_plugins.runtime.speed import cpu_description

    tune_allocator()  # the export in this process only
    for key in ENV_TUNING:
        os.environ.pop(key, None)  # only the env setting's process gets them (this one has read them already)
    modes = MODES if args.allocator == "all" else (args.allocator,)
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work_dir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        argv = [*argv, "--work-dir", str(work)]
        if args.zoo is not None:
            results = run_zoo(args, argv)
        else:
            decoder, timings = export_decoder(args, work) if "onnx" not in args.skip else (None, {})
            results = {mode: run_mode(mode, argv, decoder) for mode in modes}
    zoo_report(results, args) if args.zoo is not None else report(results, args, timings)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "cpu": cpu_description(),
                                               "exports": {"timings": timings}, "results": results}, indent=1))
    return int(any("failed" in r for r in results.values()))  # 1 when a zoo entry failed, as segment does


if __name__ == "__main__":
    sys.exit(main())
