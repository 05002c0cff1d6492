"""What the Gradio demo does, without Gradio: image preparation, the three modes, downloads.

Every function takes plain arrays and returns plain values, so it is testable
without a browser; :mod:`repvit_plugins.app.ui` wires it to the page.
"""
from __future__ import annotations

import json
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..detections import class_names, set_class_names
from ..options import ModelOptions, PipelineOptions


class DemoError(ValueError):
    """A problem the page should show to the visitor (with what to do next)."""


@dataclass
class PreparedImage:
    image: np.ndarray  # RGB uint8, at most ``max_side`` on its longer side
    scale: float  # prepared / original size
    note: str = ""


def prepare_image(source: Any, max_side: int) -> PreparedImage:
    """Decode an upload robustly and downscale it to ``max_side`` (with a note saying so)."""
    from PIL import Image

    from ..grounding.inputs import as_image
    from ..io import ImageLoadError

    if source is None:
        raise DemoError("Upload an image first.")
    try:
        image = as_image(source)
    except ImageLoadError as err:
        raise DemoError(f"That file could not be read as an image: {err}") from err
    height, width = image.shape[:2]
    longest = max(height, width)
    if longest <= max_side:
        return PreparedImage(image, 1.0)
    scale = max_side / longest
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
    note = f"The image ({width}x{height}) was downscaled to {size[0]}x{size[1]} (maximum side {max_side} px)."
    return PreparedImage(resized, scale, note)


@dataclass
class DemoModels:
    """Lazily built detector + segmenter; a missing weight becomes a message, not a crash.

    Pass ready-made ``detector`` / ``segmenter`` objects (tests, notebooks) or
    factories that build them on first use. ``sam_factory`` builds the segmenter of
    another SAM of the zoo by name (the page's model choice), ``speed_factory`` the detector
    of another speed preset (e.g. ``realtime``'s OmDet-Turbo); each is built once.
    """

    detector_factory: Callable[[], Any] | None = None
    segmenter_factory: Callable[[], Any] | None = None
    detector: Any = None
    segmenter: Any = None
    sam_model: str | None = None
    sam_factory: Callable[[str], Any] | None = None
    speed: str | None = None
    speed_factory: Callable[[str], Any] | None = None
    problems: dict[str, str] = field(default_factory=dict)
    _other_segmenters: dict[str, Any] = field(default_factory=dict)
    _other_detectors: dict[str, Any] = field(default_factory=dict)

    def _build(self, what: str, factory: Callable[[], Any] | None):
        if factory is None:
            raise DemoError(f"No {what} is configured for this demo.")
        try:
            return factory()
        except Exception as err:  # any failure to build a model is shown on the page
            self.problems[what] = str(err)
            raise DemoError(f"The {what} could not be loaded: {err}") from err

    def get_detector(self, speed: str | None = None) -> Any:
        """The detector of the ``speed`` preset, or the demo's own when ``None`` or its preset."""
        if speed is None or speed == self.speed:
            if self.detector is None:
                self.detector = self._build("detector", self.detector_factory)
            return self.detector
        return self._other(self._other_detectors, speed, self.speed_factory, f"detector of the {speed} preset",
                           f"This demo runs one speed preset ({self.speed}); {speed} is not available.")

    def get_segmenter(self, sam_model: str | None = None) -> Any:
        """The segmenter of ``sam_model`` (a zoo name), or the demo's own when ``None`` or its name."""
        if sam_model is None or sam_model == self.sam_model:
            if self.segmenter is None:
                self.segmenter = self._build("segmenter", self.segmenter_factory)
            return self.segmenter
        return self._other(self._other_segmenters, sam_model, self.sam_factory, f"segmenter {sam_model}",
                           f"This demo runs one SAM model ({self.sam_model}); {sam_model} is not available.")

    def _other(self, built: dict[str, Any], name: str, factory: Callable[[str], Any] | None, what: str,
               unavailable: str) -> Any:
        """The model ``factory`` builds for ``name``, built once; ``unavailable`` is the error without a factory."""
        if name not in built:
            if factory is None:
                raise DemoError(unavailable)
            built[name] = self._build(what, lambda: factory(name))
        return built[name]


def detection_rows(detections) -> list[list[Any]]:
    """Table rows: label, score, x1, y1, x2, y2, mask area (pixels)."""
    areas = (detections.mask.reshape(len(detections), -1).sum(1) if detections.mask is not None
             else [0] * len(detections))
    scores = detections.confidence if detections.confidence is not None else np.ones(len(detections))
    return [[n, round(float(s), 3), *[round(float(v), 1) for v in box], int(a)]
            for n, s, box, a in zip(class_names(detections), scores, detections.xyxy, areas)]


TABLE_HEADERS = ["label", "score", "x1", "y1", "x2", "y2", "area"]


def export_files(detections, image: np.ndarray, names: Sequence[str], stem: str = "result") -> list[str]:
    """Write the COCO JSON (RLE) and a zip of PNG masks into a fresh temporary folder; return their paths."""
    from ..exporters import coco_annotations, coco_dataset, mask_files

    folder = Path(tempfile.mkdtemp(prefix="repvit_demo_"))
    height, width = image.shape[:2]
    coco = coco_dataset([{"id": 1, "file_name": f"{stem}.jpg", "height": height, "width": width}],
                        coco_annotations(detections, image_id=1), names)
    coco_path = folder / f"{stem}_coco.json"
    coco_path.write_text(json.dumps(coco))
    zip_path = folder / f"{stem}_masks.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in mask_files(detections):
            archive.writestr(name, data)
    return [str(coco_path), str(zip_path)]


def run_text_mode(models: DemoModels, prepared: PreparedImage, prompt: str,
                  options: PipelineOptions | None = None, sam_model: str | None = None, speed: str | None = None):
    """Text prompt -> annotated image, table rows, download files (``speed``: the preset whose detector runs)."""
    from ..grounding import GroundedSAM, parse_prompt
    from ..visualize import annotate

    if not prompt or not prompt.strip():
        raise DemoError('Type what to find, e.g. "a cat. a remote control."')
    try:
        names = parse_prompt(prompt)
    except ValueError as err:
        raise DemoError(str(err)) from err
    pipeline = GroundedSAM(models.get_detector(speed), models.get_segmenter(sam_model), options)
    detections = pipeline.predict(prepared.image, prompt)
    return (annotate(prepared.image, detections), detection_rows(detections),
            export_files(detections, prepared.image, names))


@dataclass
class ClickState:
    """Prompts collected on one image: points with labels (1 positive, 0 negative) and an optional box."""

    points: list[list[float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    box_corner: list[float] | None = None
    box: list[float] | None = None

    def add(self, x: float, y: float, mode: str) -> None:
        if mode == "box corner":
            if self.box_corner is None:
                self.box_corner = [x, y]
            else:
                (x0, y0), self.box_corner = self.box_corner, None
                self.box = [min(x0, x), min(y0, y), max(x0, x), max(y0, y)]
        else:
            self.points.append([x, y])
            self.labels.append(1 if mode == "positive point" else 0)


def run_click_mode(models: DemoModels, prepared: PreparedImage, state: ClickState, sam_model: str | None = None):
    """Points / box prompts on an image whose embedding the segmenter caches -> annotated image, files."""
    import supervision as sv

    from ..visualize import annotate

    if not state.points and state.box is None:
        return prepared.image, []
    segmenter = models.get_segmenter(sam_model)
    segmenter.set_image(prepared.image)
    points = np.array(state.points, dtype=np.float32).reshape(-1, 2) * prepared.scale if state.points else None
    labels = np.array(state.labels, dtype=np.int64) if state.points else None
    box = np.array(state.box, dtype=np.float32) * prepared.scale if state.box is not None else None
    masks, scores, _ = segmenter.predict_points(points, labels, box=box, multimask_output=box is None)
    best = int(np.argmax(scores))
    mask = masks[best][None]
    detections = set_class_names(sv.Detections(xyxy=sv.mask_to_xyxy(mask).astype(np.float32), mask=mask,
                                               confidence=np.array([scores[best]], dtype=np.float32)), ["object"])
    canvas = annotate(prepared.image, detections, labels=False)
    canvas = _draw_prompts(canvas, points, labels, box)
    return canvas, export_files(detections, prepared.image, ["object"], stem="click")


def _draw_prompts(image: np.ndarray, points, labels, box) -> np.ndarray:
    import cv2

    canvas = image.copy()
    radius = max(3, round(max(image.shape[:2]) / 120))
    if points is not None:
        for (x, y), label in zip(points, labels):
            color = (40, 200, 40) if label == 1 else (220, 40, 40)
            cv2.circle(canvas, (int(x), int(y)), radius, color, -1)
            cv2.circle(canvas, (int(x), int(y)), radius, (255, 255, 255), 1)
    if box is not None:
        cv2.rectangle(canvas, (int(box[0]), int(box[1])), (int(box[2]), int(box[3])), (40, 120, 255), 2)
    return canvas


def run_everything_mode(models: DemoModels, prepared: PreparedImage, points_per_side: int, pred_iou_thresh: float,
                        stability_score_thresh: float, sam_model: str | None = None):
    """Automatic mask generation -> annotated image, table rows, files."""
    import supervision as sv

    from ..visualize import annotate

    records = models.get_segmenter(sam_model).generate_everything(
        prepared.image, points_per_side=int(points_per_side), pred_iou_thresh=pred_iou_thresh,
        stability_score_thresh=stability_score_thresh)
    if records:
        detections = sv.Detections.from_sam(records)
    else:
        detections = sv.Detections.empty()
        detections.mask = np.zeros((0, *prepared.image.shape[:2]), dtype=bool)
    set_class_names(detections, ["segment"] * len(detections))
    canvas = annotate(prepared.image, detections, labels=False, color_by_index=True)
    return canvas, detection_rows(detections), export_files(detections, prepared.image, ["segment"], stem="everything")


def default_models(models: ModelOptions | None = None) -> DemoModels:
    """The models ``models`` names, built on first use (so a missing file becomes a message on the page);
    the page's other SAM models use their official zoo weights."""
    from ..grounding import detector_from_options, segmenter_from_options

    models = models or ModelOptions()

    def other_sam(name: str):
        return segmenter_from_options(models.replace(sam_model=name, sam_arch="m2_3", sam_checkpoint=None,
                                                     sam_image_size=None, sam_encoder_onnx=None))

    def other_speed(speed: str):
        return detector_from_options(models.replace(speed=speed))

    return DemoModels(detector_factory=lambda: detector_from_options(models),
                      segmenter_factory=lambda: segmenter_from_options(models),
                      sam_model=models.resolved_sam_model, sam_factory=other_sam,
                      speed=models.speed, speed_factory=other_speed)


def weights_status(models: ModelOptions | None = None) -> str:
    """A Markdown note listing the weights that are neither on disk nor downloadable now ("" when all are)."""
    from ..weights.preflight import MissingWeightsError, check_weights

    try:
        check_weights(models or ModelOptions())
    except MissingWeightsError as err:
        return ("**Weights missing.** The page works once they are in place.\n\n```\n" + str(err) + "\n```")
    return ""
