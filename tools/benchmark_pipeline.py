#!/usr/bin/env python
"""The main job end to end (text prompt -> Grounding DINO boxes -> RepViT-SAM masks -> files), path by path.

Paths, each in its own process on the same images, one after the other:

- ``baseline``: written the way Grounded-SAM does it: fp32 eager detector (transformers' own attention
  code), unfused encoder,
  ``segment_anything.SamPredictor`` called once per box;
- ``before``: the default before this benchmark's speed work: float32, transformers' attention code,
  fused channels_last encoder, all boxes in one decoder call;
- ``exact``: ``--speed exact``, float32 (``before`` with the gather-based deformable attention and the fusion
  attention folded onto the text side, equal to float32 rounding);
- ``balanced`` (the default) and ``fast``: the presets as they resolve on this CPU
  (:mod:`repvit_plugins.speed`);
- ``int8``: ``exact`` with ``torch.ao.quantization.quantize_dynamic`` int8 on the detector's Linear layers;
- ``onnx`` / ``onnx-int8``: the float32 detector (transformers' attention) traced to ONNX per input shape and run
  by onnxruntime, as is or with dynamic int8 MatMuls (:mod:`repvit_plugins.grounding.onnx_runtime`; tracing
  happens in the untimed warm-up);
- ``compile``: ``balanced`` with ``torch.compile`` (inductor) on the detector (compiling happens in the warm-up;
  each new input shape compiles again).

Per path, after ``--warmup`` untimed passes over the images: the median of each stage over the images (image
load, detector preprocess, detector forward, detector decode + NMS, SAM encoder, mask decoder, post-processing
and writing), seconds per image (median of the per-image totals; the mean is in the JSON), peak
RSS, ratios to ``baseline``, ``before`` and ``exact``, and the agreement with ``exact`` (float32 on the same weights):
max abs difference of the raw logits and boxes, the share of exact's final boxes matched at IoU >= 0.9,
the mean mask IoU on exact's boxes (the segmentation path alone) and end to end (matched boxes).

Without ``--detector-model`` / ``--sam-checkpoint`` the models are the full-size architectures with random
weights, built locally (grounding-dino-tiny's Swin-T + BERT-base; RepViT-SAM M2.3): timings are real,
accuracy is not, and the thresholds default to 0 so every image gets ``--max-detections`` boxes.

  python tools/benchmark_pipeline.py            # demo/images, every path but compile (about 10 min, 2 cores)
  python tools/benchmark_pipeline.py photos/ --paths exact balanced --json bench.json
  ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python tools/benchmark_pipeline.py   # as an AVX2-only CPU
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
PATHS = ("baseline", "before", "exact", "balanced", "fast", "int8", "onnx", "onnx-int8", "compile")
DEFAULT_PATHS = tuple(p for p in PATHS if p != "compile")  # compile: minutes per input shape on 2 cores
STAGES = ("load", "det_preprocess", "det_forward", "det_decode", "encoder", "decoder", "post_write")


@dataclass(frozen=True)
class PathSpec:
    """What one benchmark path runs."""

    name: str
    describe: str
    detector_precision: str = "fp32"
    detector_image_size: int | None = None
    detector_max_size: int | None = None
    encoder_precision: str = "fp32"
    grounded_sam_style: bool = False  # unfused encoder, SamPredictor once per box
    stock_attention: bool = False  # transformers' grid_sample deformable attention
    detector_runtime: str = "torch"  # or "torch-int8" (quantize_dynamic), "onnxruntime", "onnxruntime-int8", "compile"


def path_spec(name: str) -> PathSpec:
    """The spec of a path on this machine (the presets resolve here, in the measuring process)."""
    from repvit_plugins.speed import speed_plan

    if name == "baseline":
        return PathSpec(name, "Grounded-SAM style: fp32 eager, unfused encoder, one SamPredictor call per box",
                        grounded_sam_style=True, stock_attention=True)
    if name == "before":
        return PathSpec(name, "fp32, transformers' attention code, fused encoder, boxes in one call",
                        stock_attention=True)
    if name == "int8":
        return PathSpec(name, "exact + quantize_dynamic int8 detector Linear layers", detector_runtime="torch-int8")
    if name in ("onnx", "onnx-int8"):
        int8 = " with dynamic int8 MatMuls" if name == "onnx-int8" else ""
        return PathSpec(name, f"detector in onnxruntime{int8} (fp32 graph per input shape), encoder as exact",
                        stock_attention=True, detector_runtime="onnxruntime-int8" if int8 else "onnxruntime")
    plan = speed_plan("balanced" if name == "compile" else name)
    describe = f"{plan.describe()}, detector torch.compile" if name == "compile" else plan.describe()
    return PathSpec(name, describe, plan.detector_precision, plan.detector_image_size, plan.detector_max_size,
                    encoder_precision=plan.encoder_precision,
                    detector_runtime="compile" if name == "compile" else "torch")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="*", default=[str(ROOT / "demo" / "images")], help="images or folders")
    parser.add_argument("--prompt", default="a cat. a cup. a person.", help="the text prompt of every image")
    parser.add_argument("--paths", nargs="+", default=list(DEFAULT_PATHS), choices=PATHS,
                        help="paths to run (default: all but compile, which compiles for minutes per input shape)")
    parser.add_argument("--detector-model", help="a transformers Grounding DINO folder or hub id (default: random "
                                                 "grounding-dino-tiny architecture, built in --work-dir)")
    parser.add_argument("--sam-checkpoint", help="RepViT-SAM weights (default: random)")
    parser.add_argument("--sam-arch", default="m2_3", help="RepViT variant of the SAM encoder")
    parser.add_argument("--sam-image-size", type=int, default=1024, help="SAM encoder input side")
    parser.add_argument("--max-detections", type=int, default=10, help="boxes kept per image (after NMS)")
    parser.add_argument("--box-threshold", type=float, help="default 0.35 with real weights, 0 with random ones")
    parser.add_argument("--text-threshold", type=float, help="default 0.25 with real weights, 0 with random ones")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--warmup", type=int, default=1,
                        help="untimed passes over all images per path (oneDNN builds kernels per input shape)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every path this many times, round-robin, and keep each path's fastest round "
                             "(less skewed by other load on a shared machine)")
    parser.add_argument("--work-dir", help="folder for the built models and outputs (default: a temp dir)")
    parser.add_argument("--json", help="also write all results to this JSON file")
    parser.add_argument("--child", choices=PATHS, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# -- measuring (one process per path) ---------------------------------------------------------------
class Stopwatch:
    """Seconds per stage of the current image; methods wrapped by :meth:`wrap` add to their stage."""

    def __init__(self):
        self.now: dict[str, float] = {}
        self.last: dict[str, object] = {}
        self.current = ""  # the outermost stage running (what failed, when something fails)

    def add(self, stage: str, seconds: float) -> None:
        self.now[stage] = self.now.get(stage, 0.0) + seconds

    def wrap(self, stage: str, fn):
        def timed(*args, **kwargs):
            if not stage.startswith("det_"):
                self.current = stage
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            self.add(stage, time.perf_counter() - start)
            self.last[stage] = out
            return out
        return timed


def _build_detector(spec: PathSpec, args, watch: Stopwatch):
    from repvit_plugins.grounding import build_detector

    resize = {"image_size": spec.detector_image_size, "max_size": spec.detector_max_size}
    detector = build_detector("hf", model=args.detector_model, precision=spec.detector_precision,
                              fast_attention=not spec.stock_attention, **{k: v for k, v in resize.items() if v})
    if spec.detector_runtime == "torch-int8":
        detector.model = torch.ao.quantization.quantize_dynamic(detector.model, {torch.nn.Linear}, dtype=torch.qint8)
    elif spec.detector_runtime.startswith("onnxruntime"):
        from repvit_plugins.grounding.onnx_runtime import OnnxRuntimeGroundingDino

        detector.model = OnnxRuntimeGroundingDino(detector.model, Path(args.work_dir) / "onnx",
                                                  int8=spec.detector_runtime.endswith("int8"), threads=args.threads)
    elif spec.detector_runtime == "compile":
        detector.model = torch.compile(detector.model)
    detector.preprocess = watch.wrap("det_preprocess", detector.preprocess)
    detector.forward = watch.wrap("det_forward", detector.forward)
    return detector


class _PerBoxSegmenter:
    """segment_anything's SamPredictor as Grounded-SAM uses it: one ``predict`` call per box."""

    def __init__(self, sam):
        from segment_anything import SamPredictor

        self.predictor = SamPredictor(sam)

    def set_image(self, image: np.ndarray) -> None:
        self.predictor.set_image(image)

    def predict_boxes(self, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = self.predictor.original_size
        masks, scores = [np.zeros((0, h, w), bool)], [np.zeros(0, np.float32)]
        for box in boxes:
            mask, score, _ = self.predictor.predict(box=box, multimask_output=False)
            masks.append(mask)
            scores.append(score)
        return np.concatenate(masks), np.concatenate(scores)


def _build_segmenter(spec: PathSpec, args):
    from repvit_plugins.models import build_repvit_sam
    from repvit_plugins.sam import SamSegmenter

    sam = build_repvit_sam(args.sam_checkpoint, arch=args.sam_arch, img_size=args.sam_image_size)
    if spec.grounded_sam_style:
        return _PerBoxSegmenter(sam)
    return SamSegmenter(sam, precision=spec.encoder_precision, cache_size=0)


def _write_outputs(image: np.ndarray, detections, masks: np.ndarray, scores: np.ndarray, options,
                   stem: Path) -> None:
    """Post-processing and writing as ``segment`` does them: masks attached, annotated JPEG, COCO RLE JSON."""
    from PIL import Image

    from repvit_plugins.exporters.coco import coco_annotations
    from repvit_plugins.grounding.pipeline import attach_masks
    from repvit_plugins.visualize import annotate

    detections = attach_masks(detections, masks, scores, options)
    Image.fromarray(annotate(image, detections)).save(stem.with_suffix(".jpg"))
    stem.with_suffix(".json").write_text(json.dumps(coco_annotations(detections, 0)))


def _run_image(path: Path, detector, segmenter, options, watch: Stopwatch, out: Path, index: int, reference):
    """One image through the path; its stage times and the outputs the agreement needs."""
    from repvit_plugins.io import load_image

    watch.now = {}
    image = watch.wrap("load", load_image)(path)
    found = watch.wrap("detect", detector.detect)([image], options.prompt, options.pipeline)[0]
    segmenter.predictor.reset_image()  # the warm-up saw this image: embed it again
    watch.wrap("encoder", segmenter.set_image)(image)
    masks, scores = watch.wrap("decoder", segmenter.predict_boxes)(found.xyxy)
    watch.wrap("post_write", _write_outputs)(image, found, masks, scores, options.pipeline, out / str(index))
    stages = dict(watch.now)
    stages["det_decode"] = stages.pop("detect") - stages["det_forward"]
    stages["det_forward"] -= stages["det_preprocess"]
    logits, boxes = watch.last["det_forward"]
    saved = {f"logits{index}": logits[0].float().numpy(), f"boxes{index}": boxes[0].float().numpy(),
             f"xyxy{index}": found.xyxy, f"masks{index}": np.packbits(masks.astype(bool), axis=-1)}
    if reference is not None and f"xyxy{index}" in reference:  # the segmentation path alone, on exact's boxes
        on_ref, _ = segmenter.predict_boxes(reference[f"xyxy{index}"])
        saved[f"masks_on_exact{index}"] = np.packbits(on_ref.astype(bool), axis=-1)
    return stages, saved


FAILED_STAGE = {"load": "loading", "detect": "detection", "encoder": "segmentation", "decoder": "segmentation",
                "post_write": "writing"}


def measure(spec: PathSpec, args, work: Path) -> dict:
    """Run ``spec`` over the images; stage times, RSS and the outputs the agreement needs (saved in ``work``).

    An image that fails in any stage is reported (path and stage) and skipped; the others go on.
    """
    from types import SimpleNamespace

    from repvit_plugins.io import iter_image_paths
    from repvit_plugins.options import PipelineOptions

    watch = Stopwatch()
    detector, segmenter = _build_detector(spec, args, watch), _build_segmenter(spec, args)
    options = SimpleNamespace(prompt=args.prompt, pipeline=PipelineOptions(
        box_threshold=args.box_threshold, text_threshold=args.text_threshold, max_detections=args.max_detections))
    paths = iter_image_paths(args.images)
    out = work / "outputs" / spec.name
    out.mkdir(parents=True, exist_ok=True)
    reference = work / "exact.npz"
    reference = dict(np.load(reference)) if spec.name != "exact" and reference.is_file() else None
    timed, saved, failures = [], {}, []
    for index, path in [(None, path) for path in paths] * args.warmup + list(enumerate(paths)):
        try:
            stages, outputs = _run_image(path, detector, segmenter, options, watch, out, index or 0, reference)
        except Exception:  # noqa: BLE001 - reported and skipped, as the CLI does
            if index is not None:
                failures.append({"path": str(path), "stage": FAILED_STAGE.get(watch.current, watch.current)})
            continue
        if index is not None:
            timed.append(stages)
            saved.update(outputs)
    np.savez_compressed(work / f"{spec.name}.npz", **saved)
    if not timed:
        raise RuntimeError(f"every image failed: {failures}")
    return {"spec": asdict(spec), "images": len(timed), "failures": failures,
            "stages": {s: statistics.median(t.get(s, 0.0) for t in timed) for s in STAGES},
            "seconds_per_image": statistics.median(sum(t.values()) for t in timed),
            "seconds_per_image_mean": statistics.fmean(sum(t.values()) for t in timed),
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20}


def child(args) -> None:
    from repvit_plugins.malloc_tuning import tune_allocator

    tune_allocator()  # as the CLI runs
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with torch.inference_mode():
        result = measure(path_spec(args.child), args, Path(args.work_dir))
    print("RESULT " + json.dumps(result), flush=True)


# -- orchestration ------------------------------------------------------------------------------------
def prepare_models(args, work: Path) -> None:
    """Random full-size models in ``work`` unless real ones are given; random weights mean thresholds 0."""
    random_weights = args.detector_model is None
    if args.detector_model is None:
        from repvit_plugins.grounding.random_model import save_random_grounding_dino

        folder = work / "grounding-dino-random"
        if not (folder / "config.json").is_file():
            print(f"building a random grounding-dino-tiny-shaped model in {folder} ...", flush=True)
            save_random_grounding_dino(folder)
        args.detector_model = str(folder)
    if args.sam_checkpoint is None:
        from repvit_plugins.models import build_repvit_sam

        args.sam_checkpoint = str(work / f"repvit_sam_random_{args.sam_arch}_{args.sam_image_size}.pt")
        if not Path(args.sam_checkpoint).is_file():
            torch.manual_seed(0)
            sam = build_repvit_sam(arch=args.sam_arch, img_size=args.sam_image_size)
            torch.save(sam.state_dict(), args.sam_checkpoint)
    if args.box_threshold is None:
        args.box_threshold = 0.0 if random_weights else 0.35
    if args.text_threshold is None:
        args.text_threshold = 0.0 if random_weights else 0.25


def run_path(name: str, args) -> dict:
    argv = [*args.images, "--prompt", args.prompt, "--detector-model", args.detector_model,
            "--sam-checkpoint", args.sam_checkpoint, "--sam-arch", args.sam_arch,
            "--sam-image-size", str(args.sam_image_size), "--max-detections", str(args.max_detections),
            "--box-threshold", str(args.box_threshold), "--text-threshold", str(args.text_threshold),
            "--threads", str(args.threads), "--warmup", str(args.warmup), "--work-dir", args.work_dir,
            "--child", name]
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), *argv], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")})
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise RuntimeError(f"the {name} path failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    print(f"  {name}: {time.perf_counter() - start:.0f} s", flush=True)
    return json.loads(lines[-1][len("RESULT "):])


def agreement(work: Path, name: str) -> dict:
    """``name``'s outputs against ``exact``'s (same weights, float32), over the images both have."""
    from repvit_plugins.numeric_agreement import boxes_matched, mean_mask_iou

    ours, ref = np.load(work / f"{name}.npz"), np.load(work / "exact.npz")
    logits, boxes, matched, same_boxes, e2e = [], [], [], [], []
    for i in sorted(int(k[4:]) for k in set(ours.files) & set(ref.files) if k.startswith("xyxy")):
        finite = np.isfinite(ref[f"logits{i}"]) & np.isfinite(ours[f"logits{i}"])
        logits.append(float(np.abs(ours[f"logits{i}"][finite] - ref[f"logits{i}"][finite]).max()))
        boxes.append(float(np.abs(ours[f"boxes{i}"] - ref[f"boxes{i}"]).max()))
        matched.append(boxes_matched(ours[f"xyxy{i}"], ref[f"xyxy{i}"]))
        if f"masks_on_exact{i}" in ours:
            same_boxes.append(mean_mask_iou(_masks(ours, f"masks_on_exact{i}"), _masks(ref, f"masks{i}")))
        e2e.append(_matched_mask_iou(ours, ref, i))
    mean = statistics.fmean
    return {"logits_max_abs": max(logits), "boxes_max_abs": max(boxes), "boxes_matched_iou90": mean(matched),
            "mask_iou_same_boxes": mean(same_boxes) if same_boxes else 1.0, "mask_iou_end_to_end": mean(e2e)}


def _masks(saved, key: str) -> np.ndarray:
    """Boolean masks saved bit-packed along the width (padding columns are 0 in both, so IoUs are unchanged)."""
    return np.unpackbits(saved[key], axis=-1).astype(bool)


def _matched_mask_iou(ours, ref, i: int) -> float:
    """Mean over exact's detections of the mask IoU with the path's best-overlapping box's mask (0 below IoU 0.5)."""
    from torchvision.ops import box_iou

    from repvit_plugins.numeric_agreement import mean_mask_iou

    ref_masks, our_masks = _masks(ref, f"masks{i}"), _masks(ours, f"masks{i}")
    if len(ref_masks) == 0 or len(our_masks) == 0:
        return float(len(ref_masks) == len(our_masks))
    best = box_iou(torch.as_tensor(ref[f"xyxy{i}"]), torch.as_tensor(ours[f"xyxy{i}"])).max(dim=1)
    return statistics.fmean(mean_mask_iou(our_masks[j:j + 1], ref_masks[k:k + 1]) if iou >= 0.5 else 0.0
                            for k, (iou, j) in enumerate(zip(best.values.tolist(), best.indices.tolist())))


def report(results: dict[str, dict], cpu: str, args) -> None:
    print(f"\nGrounded segmentation end to end, {results[next(iter(results))]['images']} images, prompt "
          f"{args.prompt!r}, --max-detections {args.max_detections}, {args.threads} threads, fastest of "
          f"{args.rounds} round(s); {cpu}\n")
    print("| path | " + " | ".join(STAGES) + " | s / image | vs baseline | vs before | vs exact | peak RSS | "
          "logits max abs | boxes max abs | boxes matched | mask IoU (same boxes) | mask IoU (end to end) |")
    print("|---|" + "---|" * (len(STAGES) + 11))
    base, before, exact = (results.get(k, {}).get("seconds_per_image") for k in ("baseline", "before", "exact"))
    for name, r in results.items():
        s = r["seconds_per_image"]
        agree = r.get("agreement", {})
        cells = [f"{r['stages'][stage]:.2f}" for stage in STAGES] + [
            f"**{s:.2f}**", *(f"{ref / s:.2f}x" if ref else "-" for ref in (base, before, exact)),
            f"{r['peak_rss_gb']:.2f} GB"] + [f"{agree[k]:.3g}" if k in agree else "-" for k in (
                "logits_max_abs", "boxes_max_abs", "boxes_matched_iou90", "mask_iou_same_boxes",
                "mask_iou_end_to_end")]
        print(f"| {name}: {r['spec']['describe']} | " + " | ".join(cells) + " |")
    for name, r in results.items():
        for failure in r["failures"]:
            print(f"{name}: {failure['path']} failed in {failure['stage']} and was skipped")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        child(args)
        return 0
    from repvit_plugins.speed import cpu_description

    with tempfile.TemporaryDirectory() as tmp:
        args.work_dir = args.work_dir or tmp
        work = Path(args.work_dir)
        work.mkdir(parents=True, exist_ok=True)
        prepare_models(args, work)
        names = sorted(args.paths, key=lambda n: n != "exact")  # exact first: the others compare with it
        results, rounds = {}, {name: [] for name in names}
        for _ in range(args.rounds):
            for name in names:
                result = run_path(name, args)
                rounds[name].append(result["seconds_per_image"])
                if name not in results or result["seconds_per_image"] < results[name]["seconds_per_image"]:
                    results[name] = result
        for name, result in results.items():
            result["rounds_seconds_per_image"] = rounds[name]
        for name, result in results.items():
            if "exact" in results and name != "exact":
                result["agreement"] = agreement(work, name)
        results = {name: results[name] for name in PATHS if name in results}
    cpu = cpu_description()
    report(results, cpu, args)
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": cpu, "args": vars(args), "paths": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
