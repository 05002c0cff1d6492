"""The labelling job as a library call: `label_images` writes what `segment` writes; its timer reports stages."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from repvit_plugins.jobs.labeler import Outputs
from repvit_plugins.jobs.labelling import RunOptions, label_images
from repvit_plugins.options import ModelOptions, PipelineOptions
from repvit_plugins.runtime.stage_timer import StageTimer

from ._grounding_fixtures import make_tiny_grounded_models

PHOTOS = Path(__file__).resolve().parents[1] / "demo" / "images"
PROMPT = "a cat. a dog. a cup."


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("job")
    models = make_tiny_grounded_models(tmp / "models")
    folder = tmp / "photos"
    folder.mkdir()
    for photo in sorted(PHOTOS.glob("*.jpg"))[:2]:
        shutil.copy(photo, folder / photo.name)
    (folder / "notes.png").write_text("not an image at all")
    model_options = ModelOptions(detector_model=str(models["detector"]), sam_checkpoint=str(models["sam"]),
                                 sam_arch="m0_6", sam_image_size=256)
    return folder, model_options, PipelineOptions(box_threshold=0.1, text_threshold=0.1, max_detections=4)


def _run(setup, out: Path, timer: StageTimer | None = None):
    folder, models, options = setup
    return label_images([folder], PROMPT, out, models=models, options=options, outputs=Outputs(coco=True),
                        run=RunOptions(progress=False), timer=timer)


def test_job_with_a_timer_reports_its_stages_and_writes_the_same_files(setup, tmp_path):
    plain = _run(setup, tmp_path / "plain")
    timer = StageTimer()
    start = time.perf_counter()
    timed = _run(setup, tmp_path / "timed", timer)
    wall = time.perf_counter() - start
    seconds = timer.take()
    assert set(seconds) == {"load", "detect", "encoder", "decoder", "masks", "write"}
    assert sum(seconds.values()) <= timed.summary.seconds <= wall
    assert sum(seconds.values()) >= 0.8 * timed.summary.seconds
    for done in (plain, timed):
        assert done.assembled and (done.summary.processed, done.summary.failed) == (2, 1)
        assert [f["stage"] for f in done.summary.failures] == ["loading"]
    assert (json.loads((tmp_path / "plain" / "annotations.json").read_text())
            == json.loads((tmp_path / "timed" / "annotations.json").read_text()))
    records = sorted((tmp_path / "plain" / "records").glob("*.json"))
    assert [r.read_bytes() for r in records] == [(tmp_path / "timed" / "records" / r.name).read_bytes()
                                                 for r in records]


def test_merge_only_loads_no_model_and_counts_missing_records(setup, tmp_path):
    folder, models, options = setup
    done = label_images([folder], PROMPT, tmp_path / "out", models=models.replace(detector_model="/nowhere"),
                        options=options, outputs=Outputs(coco=True), run=RunOptions(merge_only=True))
    assert (done.summary.images, done.summary.failed) == (3, 3)
    assert json.loads((tmp_path / "out" / "annotations.json").read_text())["images"] == []
