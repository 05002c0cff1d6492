"""Text prompt -> boxes (a grounding detector) -> masks (RepViT-SAM or the detector's own), as ``sv.Detections``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Sequence, TypeVar, overload

import numpy as np

from ..options import PipelineOptions
from ..runtime.stage_timer import StageTimer, timed
from .inputs import as_image, batched
from .mask_source import check_mask_source, uses_sam

if TYPE_CHECKING:  # supervision is imported where detections are built, not with the package
    import supervision as sv

S = TypeVar("S")

__all__ = ["GroundedSAM", "ImageFailure", "attach_masks", "refine_mask"]


@dataclass(frozen=True)
class ImageFailure:
    """Why one image of a batch has no result: the ``stage`` that failed and its ``error``."""

    stage: str  # 'loading' | 'detection' | 'segmentation' | 'writing'
    error: BaseException

    @property
    def reason(self) -> str:
        """One line for a report that already names the image (so it never repeats the path)."""
        err = self.error
        text = getattr(err, "reason", None) or (str(err).strip().splitlines() or [""])[0]
        if self.stage == "loading":
            return text
        if text:
            return f"{self.stage} failed ({type(err).__name__}: {text})"
        return f"{self.stage} failed ({type(err).__name__})"


def refine_mask(mask: np.ndarray, min_area: int = 0, fill_holes: bool = False) -> np.ndarray:
    """Drop islands smaller than ``min_area`` and optionally fill holes (segment_anything's region filter)."""
    from segment_anything.utils.amg import remove_small_regions

    if min_area > 0:
        mask, _ = remove_small_regions(mask, min_area, mode="islands")
    if fill_holes:
        mask, _ = remove_small_regions(mask, min_area if min_area > 0 else mask.size, mode="holes")
    return mask


def attach_masks(detections: sv.Detections, masks: np.ndarray, scores: np.ndarray,
                 options: PipelineOptions) -> sv.Detections:
    """Return ``detections`` with ``mask`` set (and ``data['mask_score']``), refined as ``options`` say."""
    import supervision as sv

    if options.refines_masks and len(masks):
        masks = np.stack([refine_mask(m, options.min_area, options.fill_holes) for m in masks])
    detections.mask = masks.astype(bool)
    detections.data["mask_score"] = np.asarray(scores, dtype=np.float32)
    if options.boxes_from_masks and len(masks):
        tight = sv.mask_to_xyxy(masks).astype(np.float32)
        empty = ~np.asarray(masks.reshape(len(masks), -1).any(axis=1))
        detections.xyxy = np.where(empty[:, None], detections.xyxy, tight)
    return detections


class GroundedSAM:
    """Grounded segmentation: ``predict(image(s), prompt) -> Detections`` with masks.

    Each image is embedded once and all of its boxes go through the mask decoder
    in one batched call; a list of images goes through the detector in batches.

    Args:
        detector: anything with ``detect(images, prompt, options) -> list[Detections]``.
        segmenter: a :class:`repvit_plugins.sam.SamSegmenter` (``set_image`` + ``predict_boxes``); ``None`` with
            ``masks='detector'``, where the detector's own masks are used (it must have ``predicts_masks``).
        options: thresholds, NMS, top-k, batch size and mask options; by default the detector's own
            ``options`` (those it was built with), else :class:`PipelineOptions` defaults.
        timer: a :class:`~repvit_plugins.runtime.stage_timer.StageTimer` that collects the seconds of the stages
            ``detect``, ``encoder`` (``set_image``), ``decoder`` (``predict_boxes``), ``masks`` (refinement and
            attaching) and ``load`` (decoding the inputs of :meth:`predict` / :meth:`stream`); ``None`` (the
            default) times nothing.
        **overrides: single options on top, e.g. ``box_threshold=0.3``.

    Raises:
        ValueError: ``masks='detector'`` with a detector without masks, or ``masks='sam'`` without a segmenter.
    """

    def __init__(self, detector: Any, segmenter: Any = None, options: PipelineOptions | None = None, *,
                 timer: StageTimer | None = None, **overrides: Any) -> None:
        self.detector = detector
        self.segmenter = segmenter
        self.timer = timer
        base = options or getattr(detector, "options", None) or PipelineOptions()
        self.options = base.replace(**overrides)
        check_mask_source(detector, segmenter, self.options)

    def segment(self, image: np.ndarray, detections: sv.Detections) -> sv.Detections:
        """Add masks for ``detections``' boxes on an RGB ``image`` (one embedding, one decoder call).

        With ``masks='detector'`` the detector's masks (already on ``detections``) are refined instead, and their
        ``mask_score`` is the box's confidence.
        """
        masks: Any  # the segmenter's arrays, or the detector's own (to supervision's types also a CompactMask)
        scores: Any
        if not uses_sam(self.options):
            if detections.mask is None:
                raise RuntimeError(f"{type(self.detector).__name__} returned no masks for masks='detector'")
            masks, scores = detections.mask, detections.confidence
        else:
            with timed(self.timer, "encoder"):
                self.segmenter.set_image(image)
            with timed(self.timer, "decoder"):
                masks, scores = self.segmenter.predict_boxes(detections.xyxy, multimask_output=self.options.multimask)
        with timed(self.timer, "masks"):
            return attach_masks(detections, masks, scores, self.options)

    def predict_batch(self, images: Sequence[np.ndarray], prompt: str | Sequence[str]
                      ) -> list[sv.Detections | ImageFailure]:
        """Detections with masks for each RGB ``uint8`` array; an image that fails gets an :class:`ImageFailure`.

        One image's failure (in the detector or the segmenter) never costs the others
        their results: a failed detector batch is retried image by image.
        """
        results: list[sv.Detections | ImageFailure] = []
        for image, found in zip(images, self._detect(list(images), prompt)):
            if isinstance(found, ImageFailure):
                results.append(found)
                continue
            try:
                results.append(self.segment(image, found))
            except Exception as err:  # noqa: BLE001 - reported per image, the batch goes on
                results.append(ImageFailure("segmentation", err))
        return results

    def _detect(self, images: list[np.ndarray], prompt: str | Sequence[str]) -> list[sv.Detections | ImageFailure]:
        try:
            with timed(self.timer, "detect"):
                return self.detector.detect(images, prompt, options=self.options)
        except Exception as err:  # noqa: BLE001 - isolate the image that fails
            if len(images) == 1:
                return [ImageFailure("detection", err)]
            return [self._detect([image], prompt)[0] for image in images]

    def stream(self, sources: Sequence[S], prompt: str | Sequence[str]
               ) -> Iterator[tuple[S, np.ndarray | None, sv.Detections | ImageFailure]]:
        """``(source, image, result)`` for each source, a batch of ``options.batch_size`` at a time.

        ``result`` is the source's Detections with masks, or an :class:`ImageFailure` (``image`` is ``None`` when
        it could not be loaded). A batch's unreadable sources come first, then its results in order.
        """
        from ..io import ImageLoadError

        for batch in batched(sources, self.options.batch_size):
            loaded: list[S] = []
            arrays: list[np.ndarray] = []
            for source in batch:
                try:
                    with timed(self.timer, "load"):
                        arrays.append(as_image(source))
                    loaded.append(source)
                except ImageLoadError as err:
                    yield source, None, ImageFailure("loading", err)
            results = self.predict_batch(arrays, prompt) if arrays else []
            yield from zip(loaded, arrays, results)

    @overload
    def predict(self, images: list[Any] | tuple[Any, ...], prompt: str | Sequence[str]) -> list[sv.Detections]: ...

    @overload
    def predict(self, images: Any, prompt: str | Sequence[str]) -> sv.Detections: ...

    def predict(self, images: Any | Sequence[Any], prompt: str | Sequence[str]
                ) -> sv.Detections | list[sv.Detections]:
        """Detections with masks for one image (path, PIL or RGB array) or a list of them.

        Raises:
            the first image's error, if any image fails (:meth:`predict_batch` returns errors as values).
        """
        single = not isinstance(images, (list, tuple))
        results: list[sv.Detections] = []
        for _, _, result in self.stream([images] if single else list(images), prompt):
            if isinstance(result, ImageFailure):
                raise result.error
            results.append(result)
        return results[0] if single else results
