"""Resumable batch labelling of many images with a :class:`~repvit_plugins.grounding.GroundedSAM` pipeline.

The job owns folders, records and resume; the pipeline's public
:meth:`~repvit_plugins.grounding.GroundedSAM.stream` loads, batches and labels the
images and returns per-image failures as values, so one bad image never ends the batch.
Every image's outputs are written atomically, then its record
(``records/<key>.json``) last: the record is the commit point. A rerun with the
same settings skips images that have a record, so a killed run (even ``kill -9``)
continues with nothing lost and nothing written twice. The COCO file is
assembled from the records at the end of every run (:meth:`BatchLabeler.finish`);
under ``torchrun`` each rank labels its share (:meth:`BatchLabeler.label`) and one
process assembles (see :mod:`repvit_plugins.jobs.shards`).
"""
from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

from ..exporters import coco_annotations, coco_dataset, write_png_masks, yolo_seg_lines
from ..grounding.pipeline import GroundedSAM, ImageFailure
from ..io.atomic import atomic_write_bytes, atomic_write_text
from ..runtime.stage_timer import StageTimer, timed

if TYPE_CHECKING:  # supervision is imported by the code that builds and writes detections
    import supervision as sv

SETTINGS_FILE = "run.json"
SUMMARY_SETTINGS = ("speed", "speed_path", "detector_model", "sam_model")
"""Run settings repeated in ``summary.json``: which models and numeric path produced the labels."""


class RunSettingsMismatch(RuntimeError):
    """The output folder holds a run made with other settings."""


@dataclass
class Outputs:
    """Which files to write for every image."""

    annotated: bool = True
    coco: bool = False
    png_masks: bool = False
    yolo: bool = False


@dataclass
class Summary:
    images: int = 0
    processed: int = 0
    skipped_done: int = 0
    failed: int = 0
    detections: int = 0
    seconds: float = 0.0
    failures: list[dict[str, str]] = field(default_factory=list)

    @property
    def seconds_per_image(self) -> float:
        return self.seconds / self.processed if self.processed else 0.0

    @classmethod
    def combine(cls, parts: Sequence["Summary"], images: int) -> "Summary":
        """One summary of several ranks' runs over ``images`` images in all (their time: the slowest's)."""
        return cls(images=images, processed=sum(p.processed for p in parts),
                   skipped_done=sum(p.skipped_done for p in parts), failed=sum(p.failed for p in parts),
                   detections=sum(p.detections for p in parts), seconds=max((p.seconds for p in parts), default=0.0),
                   failures=[f for p in parts for f in p.failures])

    def render(self) -> str:
        lines = [f"images: {self.images} ({self.processed} processed now, {self.skipped_done} already done, "
                 f"{self.failed} failed)",
                 f"detections: {self.detections} in the images processed now",
                 f"time: {self.seconds:.1f} s ({self.seconds_per_image:.2f} s per processed image)"]
        lines += [f"failed: {f['path']}: {f['error']}" for f in self.failures]
        return "\n".join(lines)


def output_stem(path: Path) -> str:
    """A stable, unique output name for an input file (its stem and a hash of its absolute path)."""
    digest = hashlib.sha1(str(path.resolve()).encode("utf-8")).hexdigest()[:10]
    return f"{path.stem}-{digest}"


def sorted_paths(paths: Sequence[str | Path]) -> list[Path]:
    """The job's order of images: sorted, without duplicates (image ids and rank shares follow it)."""
    return sorted(dict.fromkeys(Path(p) for p in paths))


def encode_jpeg(image: np.ndarray) -> bytes:
    """An RGB image as the JPEG bytes the job writes for annotated images (quality 90)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


class BatchLabeler:
    """Label ``paths`` into ``out_dir`` (``annotated/``, ``masks/``, ``labels/``, ``records/``, ``annotations.json``).

    Args:
        pipeline: a :class:`GroundedSAM`; ``None`` for a labeler that only merges (:meth:`finish`), not labels.
        out_dir: output folder; a rerun with the same ``settings`` resumes.
        prompt: the text prompt (caption or list of class names).
        class_names: the parsed class list (COCO categories / YOLO ids).
        outputs: which files to write.
        settings: everything that changes results (prompt, thresholds, models); compared on resume.
        timer: collects the seconds of the ``write`` stage (the pipeline's own ``timer`` its stages, ``load``
            included); ``None`` times nothing.
    """

    def __init__(self, pipeline: GroundedSAM | None, out_dir: str | Path, prompt: str | Sequence[str],
                 class_names: Sequence[str], outputs: Outputs, settings: dict[str, Any], *,
                 timer: StageTimer | None = None) -> None:
        self.pipeline = pipeline
        self.timer = timer
        self.out = Path(out_dir)
        self.prompt = prompt
        self.class_names = list(class_names)
        self.outputs = outputs
        self.settings = {**settings, "class_names": self.class_names, "outputs": asdict(outputs)}

    def _check_settings(self, overwrite: bool, paths: Sequence[Path]) -> None:
        path = self.out / SETTINGS_FILE
        if path.is_file() and not overwrite:
            previous = json.loads(path.read_text())
            if previous != json.loads(json.dumps(self.settings)):
                changed = sorted(k for k in set(previous) | set(self.settings)
                                 if previous.get(k) != json.loads(json.dumps(self.settings)).get(k))
                raise RunSettingsMismatch(
                    f"{self.out} holds a run made with other settings ({', '.join(changed)} differ). "
                    "Use another --out folder, rerun with the same arguments to resume, or pass --overwrite."
                )
        if overwrite:  # only this job's images: other ranks redo theirs
            for image_path in paths:
                self._record_of(image_path).unlink(missing_ok=True)
        atomic_write_text(path, json.dumps(self.settings, indent=2, sort_keys=True))

    def _write_outputs(self, key: str, path: Path, image: np.ndarray, detections: sv.Detections) -> dict[str, Any]:
        from ..visualize import annotate

        height, width = image.shape[:2]
        if self.outputs.annotated:
            atomic_write_bytes(self.out / "annotated" / f"{key}.jpg", encode_jpeg(annotate(image, detections)))
        if self.outputs.png_masks:
            write_png_masks(detections, self.out / "masks" / key)
        if self.outputs.yolo:
            atomic_write_text(self.out / "labels" / f"{key}.txt", "\n".join(yolo_seg_lines(detections, height, width)))
        return {
            "file_name": str(path),
            "height": height,
            "width": width,
            "annotations": coco_annotations(detections, image_id=0) if self.outputs.coco else [],
            "detections": len(detections),
        }

    def _record_path(self, key: str) -> Path:
        return self.out / "records" / f"{key}.json"

    def _record_of(self, path: Path) -> Path:
        """Where the record (the commit point) of input ``path`` goes."""
        return self._record_path(output_stem(path))

    def run(self, paths: Sequence[Path], *, overwrite: bool = False, progress: bool = True,
            on_image: Callable[[Path], None] | None = None) -> Summary:
        """Label every path that has no record yet, then assemble the outputs; returns the run's :class:`Summary`."""
        summary = self.label(paths, overwrite=overwrite, progress=progress, on_image=on_image)
        self.finish(paths, summary)
        return summary

    def label(self, paths: Sequence[Path], *, overwrite: bool = False, progress: bool = True,
              on_image: Callable[[Path], None] | None = None) -> Summary:
        """Label every path that has no record yet (writing records, not the assembled files)."""
        from tqdm.auto import tqdm

        if self.pipeline is None:
            raise RuntimeError("this BatchLabeler has no pipeline (it was made to merge): it cannot label")
        self.out.mkdir(parents=True, exist_ok=True)
        paths = sorted_paths(paths)
        self._check_settings(overwrite, paths)
        summary = Summary(images=len(paths))
        todo = [p for p in paths if not self._record_of(p).is_file()]
        summary.skipped_done = len(paths) - len(todo)
        start = time.perf_counter()
        with tqdm(total=len(todo), desc="segmenting", unit="img", disable=not progress) as bar:
            for path, image, found in self.pipeline.stream(todo, self.prompt):
                result: int | ImageFailure
                if isinstance(found, ImageFailure):
                    result = found
                else:
                    assert image is not None  # the stream has an image for every result that is not a failure
                    with timed(self.timer, "write"):
                        result = self._commit(path, image, found)
                if isinstance(result, ImageFailure):
                    self._failed(summary, path, result)
                else:
                    summary.processed += 1
                    summary.detections += result
                bar.update(1)
                if image is not None and on_image is not None:
                    on_image(path)
        summary.seconds = time.perf_counter() - start
        return summary

    def _commit(self, path: Path, image: np.ndarray, detections: sv.Detections) -> int | ImageFailure:
        """Write one image's outputs, then its record (the commit point); returns its number of detections."""
        key = output_stem(path)
        try:
            record = self._write_outputs(key, path, image, detections)
            atomic_write_text(self._record_path(key), json.dumps(record))
        except Exception as err:  # noqa: BLE001 - a full disk or odd file name fails this image, not the batch
            return ImageFailure("writing", err)
        return len(detections)

    @staticmethod
    def _failed(summary: Summary, path: Path, failure: ImageFailure) -> None:
        summary.failed += 1
        summary.failures.append({"path": str(path), "stage": failure.stage, "error": failure.reason})

    def records(self, paths: Sequence[Path]) -> Iterator[tuple[int, Path, dict[str, Any]]]:
        """``(image id, path, record)`` of every labelled path; ids are positions in the sorted list, from 1."""
        for image_id, path in enumerate(sorted_paths(paths), 1):
            record_path = self._record_of(path)
            if record_path.is_file():
                yield image_id, path, json.loads(record_path.read_text())

    def merge_summary(self, paths: Sequence[Path]) -> Summary:
        """The summary of a merge: how many of ``paths`` have a record; those without count as failed."""
        paths = sorted_paths(paths)
        missing = [p for p in paths if not self._record_of(p).is_file()]
        return Summary(images=len(paths), skipped_done=len(paths) - len(missing), failed=len(missing),
                       failures=[{"path": str(p), "stage": "merging", "error": "no record (failed, or its share "
                                  "has not finished)"} for p in missing])

    def finish(self, paths: Sequence[Path], summary: Summary) -> None:
        """Assemble ``annotations.json`` from the records of ``paths`` and write ``summary.json``."""
        if self.outputs.coco:
            images, annotations = [], []
            for image_id, _, record in self.records(paths):
                images.append({"id": image_id, "file_name": record["file_name"],
                               "height": record["height"], "width": record["width"]})
                annotations += [{**ann, "image_id": image_id} for ann in record["annotations"]]
            dataset = coco_dataset(images, annotations, self.class_names)
            atomic_write_text(self.out / "annotations.json", json.dumps(dataset))
        atomic_write_text(self.out / "summary.json",
                          json.dumps({**asdict(summary), "seconds_per_image": summary.seconds_per_image,
                                      **{key: self.settings.get(key) for key in SUMMARY_SETTINGS}}, indent=2))
