#!/usr/bin/env python
"""The main job end to end (text prompt -> detector boxes -> SAM masks -> files), path by path, and a peer.

Paths, each in its own process on the same images, one after the other:

- ``baseline``: written the way Grounded-SAM does it: fp32 eager detector (transformers' own attention
  code), unfused encoder,
  ``segment_anything.SamPredictor`` called once per box;
- ``before``: float32, transformers' attention code, fused channels_last encoder, all boxes in one decoder call;
- ``exact``: ``--speed exact``, float32 (``before`` with the gather-based deformable attention and the fusion
  attention folded onto the text side, equal to float32 rounding);
- ``balanced`` (the default) and ``fast``: the presets as they resolve on this CPU
  (:mod:`repvit_plugins.runtime.speed`);
- ``int8``: ``exact`` with ``torch.ao.quantization.quantize_dynamic`` int8 on the detector's Linear layers;
- ``onnx`` / ``onnx-int8``: the float32 detector (transformers' attention) traced to ONNX per input shape and run
  by onnxruntime, as is or with dynamic int8 MatMuls (:mod:`repvit_plugins.grounding.onnx_runtime`; tracing
  happens in the untimed warm-up);
- ``compile``: ``balanced`` with ``torch.compile`` (inductor) on the detector (compiling happens in the warm-up;
  each new input shape compiles again);
- ``det:NAME``, one per entry of the detector zoo (``repvit-plugins info``): that detector at its
  own input size with ``balanced`` numerics, RepViT-SAM as above. Not run by default: ``det:grounding_dino_tiny``
  (that is ``balanced``) and ``det:llmdet_tiny`` (the same class and shape as ``det:mm_grounding_dino_tiny``).
  ``det:groundingdino_swint_ogc`` and ``det:mmdet_grounding_dino`` run Grounding DINO-T's architecture through
  the groundingdino-py and mmdet backends (random, built with a random local BERT-base:
  :mod:`repvit_plugins.grounding.random_backends`; ``--zoo-model`` does not apply to them);
- ``realtime``: ``--speed realtime``: OmDet-Turbo at its 640x640 input and EdgeSAM, the preset's precision;
- ``yoloe-11s-seg`` / ``yoloe-11l-seg``: the peer, ultralytics' text-prompted YOLOE (AGPL-3.0, never a
  dependency: :mod:`yoloe_peer`), at 640, class embeddings set once, masks at image size, its own NMS (with
  random weights it keeps fewer boxes than the others: see the boxes column). Run when ultralytics imports, else
  reported as skipped with the command that installs it.

Every path runs the library's own ``GroundedSAM`` (``build_detector`` + ``SamSegmenter``, the baseline with a
per-box ``SamPredictor`` adapter) timed by its stage hook (``runtime.stage_timer``). Per path, after ``--warmup``
untimed passes over the images: the median of each stage over the images (``load``; ``detect``, the detector as a
whole; SAM ``encoder``; mask ``decoder``; ``masks``, refining and attaching them; ``write``, the annotated JPEG and
COCO JSON written atomically; YOLOE's ``detect`` is the whole model, masks included), seconds per image
(median of the per-image totals; the mean is in the JSON), peak RSS, ratios to ``baseline``, ``before`` and
``exact``, and, for the paths on exact's detector, the agreement with ``exact``
(float32 on the same weights): max abs difference of the raw logits and boxes, the share of exact's final boxes
matched at IoU >= 0.9, the mean mask IoU on exact's boxes (the segmentation path alone) and end to end (matched
boxes). A last line compares ``realtime`` with YOLOE-11s-seg and ``balanced``.

Without ``--detector-model`` / ``--sam-checkpoint`` / ``--zoo-model`` the models are the full-size
architectures with random weights, built once in ``--work-dir`` (reused by later runs with the same folder):
timings are real, accuracy is not, and the thresholds default to 0 so every image gets ``--max-detections`` boxes.

  python tools/benchmark_pipeline.py            # demo/images, the default paths (tens of minutes, 2 cores)
  python tools/benchmark_pipeline.py photos/ --paths exact balanced --json bench.json
  python tools/benchmark_pipeline.py --paths balanced realtime yoloe-11s-seg --work-dir ~/.cache/bench
  ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python tools/benchmark_pipeline.py   # as an AVX2-only CPU
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tools/yoloe_peer.py, imported only where used

from repvit_plugins.bench import pipeline_paths as bp  # noqa: E402 - light modules
from repvit_plugins.bench.child import emit, run_child  # noqa: E402
from repvit_plugins.grounding.detector_zoo import REALTIME_DETECTOR  # noqa: E402
from repvit_plugins.options import REALTIME_SAM  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="*", default=[str(ROOT / "demo" / "images")], help="images or folders")
    parser.add_argument("--prompt", default="a cat. a cup. a person.", help="the text prompt of every image")
    parser.add_argument("--paths", nargs="+", default=list(bp.DEFAULT_PATHS), choices=bp.PATHS, metavar="PATH",
                        help=f"paths to run, of: {', '.join(bp.PATHS)} "
                             f"(default: all but {', '.join(bp.NOT_BY_DEFAULT)})")
    parser.add_argument("--detector-model", help="the Grounding DINO of the baseline ... compile paths: a "
                                                 "transformers folder or hub id (default: random "
                                                 "grounding-dino-tiny architecture, built in --work-dir)")
    parser.add_argument("--zoo-model", action="append", type=bp.zoo_model, default=[], metavar="NAME=FOLDER",
                        help="a transformers folder for detector-zoo entry NAME (its det:NAME path, and realtime's "
                             f"for {REALTIME_DETECTOR}) instead of a random full-size one; repeatable")
    parser.add_argument("--sam-checkpoint", help="RepViT-SAM weights (default: random)")
    parser.add_argument("--sam-arch", default="m2_3", help="RepViT variant of the SAM encoder")
    parser.add_argument("--sam-image-size", type=int, default=1024, help="RepViT-SAM encoder input side")
    parser.add_argument("--realtime-sam-checkpoint",
                        help=f"{REALTIME_SAM} weights of the realtime path (default: random)")
    parser.add_argument("--max-detections", type=int, default=10, help="boxes kept per image (after NMS)")
    parser.add_argument("--box-threshold", type=float,
                        help="default 0.35 with real weights, 0 with random ones (YOLOE: its conf)")
    parser.add_argument("--text-threshold", type=float, help="default 0.25 with real weights, 0 with random ones")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--warmup", type=int, default=1,
                        help="untimed passes over all images per path (oneDNN builds kernels per input shape)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every path this many times, round-robin, and keep each path's fastest round "
                             "(less skewed by other load on a shared machine)")
    parser.add_argument("--work-dir", help="folder for the built models and outputs; random models built there "
                                           "are reused by later runs (default: a temp dir)")
    parser.add_argument("--json", help="also write all results to this JSON file")
    parser.add_argument("--child", choices=bp.PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--sam-model", default="repvit_sam", help=argparse.SUPPRESS)  # child: the path's SAM
    args = parser.parse_args(argv)
    args.zoo_model = dict(args.zoo_model)
    return args


def child(args: argparse.Namespace) -> None:
    """Measure one path in this (fresh) process and print its result line."""
    from repvit_plugins.bench.pipeline_measure import measure
    from repvit_plugins.runtime.malloc_tuning import tune_allocator

    spec = bp.path_spec(args.child)
    peer = None
    if spec.peer:
        from yoloe_peer import YoloePeer, missing_reason

        reason = missing_reason()
        if reason:
            emit({"spec": asdict(spec), "skipped": reason})
            return
        peer = YoloePeer
    tune_allocator()  # as the CLI runs
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with torch.inference_mode():
        emit(measure(spec, args, Path(args.work_dir), peer))


def run_path(name: str, models: bp.PathModels, args: argparse.Namespace) -> dict:
    """``name`` measured in a child process; its result, ``{'skipped': why}`` or ``{'failed': why}``."""
    box, text = bp.thresholds(args, models.random)
    argv = [*args.images, "--prompt", args.prompt, "--sam-model", models.sam, "--sam-arch", args.sam_arch,
            "--sam-image-size", str(args.sam_image_size), "--max-detections", str(args.max_detections),
            "--box-threshold", str(box), "--text-threshold", str(text), "--threads", str(args.threads),
            "--warmup", str(args.warmup), "--work-dir", args.work_dir, "--child", name]
    argv += ["--detector-model", models.detector] if models.detector else []
    argv += ["--sam-checkpoint", models.sam_checkpoint] if models.sam_checkpoint else []
    start = time.perf_counter()
    result = run_child(Path(__file__).resolve(), argv, env={"HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")})
    outcome = next((f"{k}: {result[k]}" for k in ("skipped", "failed") if k in result), None)
    print(f"  {name}: {outcome or f'{time.perf_counter() - start:.0f} s'}", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child(args)
        return 0
    from repvit_plugins.bench.pipeline_report import agreement, report
    from repvit_plugins.runtime.speed import cpu_description

    with tempfile.TemporaryDirectory() as tmp:
        args.work_dir = args.work_dir or tmp
        work = Path(args.work_dir)
        work.mkdir(parents=True, exist_ok=True)
        models = bp.prepare_models(args, work)
        names = sorted(args.paths, key=lambda n: n != "exact")  # exact first: the others compare with it
        results, rounds = {}, {name: [] for name in names}
        for _ in range(args.rounds):
            for name in names:
                result = run_path(name, models[name], args)
                if "seconds_per_image" not in result:
                    results.setdefault(name, result)
                    continue
                rounds[name].append(result["seconds_per_image"])
                best = results.get(name, {}).get("seconds_per_image")
                if best is None or result["seconds_per_image"] < best:
                    results[name] = result
        for name, result in results.items():
            if rounds[name]:
                result["rounds_seconds_per_image"] = rounds[name]
            measured = "seconds_per_image" in result and "seconds_per_image" in results.get("exact", {})
            if measured and name != "exact" and name in bp.GROUNDING_DINO_PATHS:
                result["agreement"] = agreement(work, name)
        results = {name: results[name] for name in bp.PATHS if name in results}
    cpu = cpu_description()
    report(results, cpu, args)
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": cpu, "args": vars(args), "paths": results}, indent=2))
    return 1 if any("failed" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
