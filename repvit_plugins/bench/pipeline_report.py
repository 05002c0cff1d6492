"""The pipeline benchmark's comparisons and report: agreement with ``exact`` and the Markdown table."""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from .numeric_agreement import boxes_matched, mean_mask_iou
from .pipeline_measure import STAGES

__all__ = ["agreement", "ratio_lines", "report", "table"]

AGREEMENT = ("logits_max_abs", "boxes_max_abs", "boxes_matched_iou90", "mask_iou_same_boxes", "mask_iou_end_to_end")


def _masks(saved: Mapping[str, np.ndarray], key: str) -> np.ndarray:
    """Boolean masks saved bit-packed along the width (padding columns are 0 in both, so IoUs are unchanged)."""
    return np.unpackbits(saved[key], axis=-1).astype(bool)


def _matched_mask_iou(ours: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray], i: int) -> float:
    """Mean over exact's detections of the mask IoU with the path's best-overlapping box's mask (0 below IoU 0.5)."""
    from torchvision.ops import box_iou

    ref_masks, our_masks = _masks(ref, f"masks{i}"), _masks(ours, f"masks{i}")
    if len(ref_masks) == 0 or len(our_masks) == 0:
        return float(len(ref_masks) == len(our_masks))
    best = box_iou(torch.as_tensor(ref[f"xyxy{i}"]), torch.as_tensor(ours[f"xyxy{i}"])).max(dim=1)
    return statistics.fmean(mean_mask_iou(our_masks[j:j + 1], ref_masks[k:k + 1]) if iou >= 0.5 else 0.0
                            for k, (iou, j) in enumerate(zip(best.values.tolist(), best.indices.tolist())))


def agreement(work: Path, name: str) -> dict[str, float]:
    """Path ``name``'s saved outputs against ``exact``'s (same weights, float32), over the images both have."""
    ours, ref = np.load(work / f"{name}.npz"), np.load(work / "exact.npz")
    logits, boxes, matched, same_boxes, e2e = [], [], [], [], []
    for i in sorted(int(k[4:]) for k in set(ours.files) & set(ref.files) if k.startswith("xyxy")):
        if f"logits{i}" in ours and f"logits{i}" in ref:
            finite = np.isfinite(ref[f"logits{i}"]) & np.isfinite(ours[f"logits{i}"])
            logits.append(float(np.abs(ours[f"logits{i}"][finite] - ref[f"logits{i}"][finite]).max()))
            boxes.append(float(np.abs(ours[f"boxes{i}"] - ref[f"boxes{i}"]).max()))
        matched.append(boxes_matched(ours[f"xyxy{i}"], ref[f"xyxy{i}"]))
        if f"masks_on_exact{i}" in ours:
            same_boxes.append(mean_mask_iou(_masks(ours, f"masks_on_exact{i}"), _masks(ref, f"masks{i}")))
        e2e.append(_matched_mask_iou(ours, ref, i))
    result = {"boxes_matched_iou90": statistics.fmean(matched),
              "mask_iou_same_boxes": statistics.fmean(same_boxes) if same_boxes else 1.0,
              "mask_iou_end_to_end": statistics.fmean(e2e)}
    if logits:
        result.update(logits_max_abs=max(logits), boxes_max_abs=max(boxes))
    return result


def ratio_lines(results: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """``realtime`` against YOLOE-11s-seg and ``balanced`` (issue targets: <= 3x YOLOE-11s-seg), where both ran."""
    seconds = {name: r["seconds_per_image"] for name, r in results.items() if "seconds_per_image" in r}
    if "realtime" not in seconds:
        return []
    realtime, lines = seconds["realtime"], []
    if "yoloe-11s-seg" in seconds:
        lines.append(f"realtime vs YOLOE-11s-seg: {realtime:.2f} / {seconds['yoloe-11s-seg']:.2f} s per image = "
                     f"{realtime / seconds['yoloe-11s-seg']:.2f}x its time (target <= 3x)")
    if "balanced" in seconds:
        lines.append(f"realtime vs balanced: {realtime:.2f} / {seconds['balanced']:.2f} s per image = "
                     f"{seconds['balanced'] / realtime:.2f}x faster")
    return lines


def table(measured: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The report's Markdown table: one row per measured path ('-' where a stage or a comparison does not apply)."""
    rows = ["| path | " + " | ".join(STAGES) + " | boxes | s / image | vs baseline | vs before | vs exact | peak RSS | "
            "logits max abs | boxes max abs | boxes matched | mask IoU (same boxes) | mask IoU (end to end) |",
            "|---|" + "---|" * (len(STAGES) + 12)]
    base, before, exact = (measured.get(k, {}).get("seconds_per_image") for k in ("baseline", "before", "exact"))
    for name, r in measured.items():
        s = r["seconds_per_image"]
        agree = r.get("agreement", {})
        cells = [f"{r['stages'][stage]:.2f}" if stage in r["stages"] else "-" for stage in STAGES] + [
            f"{r['boxes_per_image']:g}", f"**{s:.2f}**",
            *(f"{ref / s:.2f}x" if ref else "-" for ref in (base, before, exact)),
            f"{r['peak_rss_gb']:.2f} GB"] + [f"{agree[k]:.3g}" if k in agree else "-" for k in AGREEMENT]
        rows.append(f"| {name}: {r['spec']['describe']} | " + " | ".join(cells) + " |")
    return rows


def report(results: Mapping[str, Mapping[str, Any]], cpu: str, args: argparse.Namespace) -> None:
    """Print the table, the realtime ratios, the skipped paths and the images that failed."""
    measured = {name: r for name, r in results.items() if "skipped" not in r and "failed" not in r}
    images = next(iter(measured.values()))["images"] if measured else 0
    print(f"\nGrounded segmentation end to end, {images} images, prompt {args.prompt!r}, --max-detections "
          f"{args.max_detections}, {args.threads} threads, fastest of {args.rounds} round(s); {cpu}\n")
    for line in [*(table(measured) + [""] if measured else []), *ratio_lines(measured)]:
        print(line)
    for name, r in results.items():
        if "skipped" in r:
            print(f"{name}: skipped: {r['skipped']}")
        if "failed" in r:
            print(f"{name}: failed: {r['failed']}")
        for failure in r.get("failures", []):
            print(f"{name}: {failure['path']} failed in {failure['stage']} and was skipped")
