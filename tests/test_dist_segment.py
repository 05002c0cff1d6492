"""Labelling under torchrun (tools/dist_segment.sh, 2 CPU processes, gloo) equals a 1-process run; a rank killed
with SIGKILL loses nothing when rerun; shares run alone (--shard) and merged (--merge-only) give the same files."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from repvit_plugins.cli import main as cli_main

from ._grounding_fixtures import make_tiny_grounded_models
from ._mm_fixtures import ROOT, write_coco

pytestmark = pytest.mark.slow

# imported by every Python process of the run (PYTHONPATH): rank 1 SIGKILLs itself after committing two images
KILL_RANK_1 = """
import os
if os.environ.get("RANK") == "1" and os.environ.get("REPVIT_TEST_KILL_AFTER"):
    import signal
    from repvit_plugins.jobs import labeler

    commit, done = labeler.BatchLabeler._commit, []

    def dying_commit(self, *args):
        result = commit(self, *args)
        done.append(result)
        if len(done) == int(os.environ["REPVIT_TEST_KILL_AFTER"]):
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    labeler.BatchLabeler._commit = dying_commit
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    photos = write_coco(root / "photos", num_images=10) / "images"
    return {"photos": photos, "models": make_tiny_grounded_models(root / "models")}


def _args(setup, out: Path, *extra: str) -> list[str]:
    models = setup["models"]
    return ["segment", str(setup["photos"]), "--prompt", "a square. a disc.", "--out", str(out), "--coco",
            "--no-annotated", "--detector-model", str(models["detector"]), "--sam-checkpoint", str(models["sam"]),
            "--sam-arch", "m0_6", "--sam-image-size", "256", "--box-threshold", "0", "--text-threshold", "0",
            "--max-detections", "2", "--batch-size", "1", "--no-progress", *extra]


def _torchrun(setup, out: Path, tmp_path: Path, *, args: list[str] | None = None,
              **env: str) -> subprocess.CompletedProcess:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "inject").mkdir(exist_ok=True)
    (tmp_path / "inject" / "sitecustomize.py").write_text(KILL_RANK_1)
    environ = {**os.environ, "PYTHON": sys.executable, "PORT": str(port), "OMP_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join([str(tmp_path / "inject"), str(ROOT)]), **env}
    return subprocess.run(["bash", str(ROOT / "tools/dist_segment.sh"), "2", *(args or _args(setup, out))],
                          capture_output=True, text=True, env=environ, timeout=600)


def _records(out: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted((out / "records").glob("*.json"))}


@pytest.fixture(scope="module")
def single(setup, tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "out"
    assert cli_main(_args(setup, out)) == 0
    return out


def test_two_ranks_write_exactly_the_records_of_one_process(setup, single, tmp_path):
    out = tmp_path / "out"
    run = _torchrun(setup, out, tmp_path)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "rank 1 of 2: its share is done" in run.stdout and "images: 10 (10 processed now" in run.stdout
    assert _records(out) == _records(single) and len(_records(out)) == 10
    assert (out / "annotations.json").read_bytes() == (single / "annotations.json").read_bytes()


def test_a_killed_rank_loses_nothing_on_rerun(setup, single, tmp_path):
    out = tmp_path / "out"
    killed = _torchrun(setup, out, tmp_path, REPVIT_TEST_KILL_AFTER="2")
    assert killed.returncode != 0 and "SIGKILL" in killed.stderr + killed.stdout
    assert 2 <= len(_records(out)) < 10
    assert not (out / "annotations.json").exists()
    rerun = _torchrun(setup, out, tmp_path)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-3000:]
    assert "images: 10 (" in rerun.stdout and "already done" in rerun.stdout
    assert _records(out) == _records(single)
    assert (out / "annotations.json").read_bytes() == (single / "annotations.json").read_bytes()


def test_shares_run_alone_then_merge(setup, single, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli_main(_args(setup, out, "--shard", "1/2")) == 0
    assert "share 1/2 is done" in capsys.readouterr().out and not (out / "annotations.json").exists()
    assert cli_main(_args(setup, out, "--merge-only")) == 1  # half the images have no record yet
    assert "5 failed" in capsys.readouterr().out
    assert cli_main(_args(setup, out, "--shard", "0/2")) == 0
    assert cli_main(_args(setup, out, "--merge-only")) == 0
    assert _records(out) == _records(single)
    assert (out / "annotations.json").read_bytes() == (single / "annotations.json").read_bytes()


def test_autolabel_under_torchrun_writes_the_dataset_of_one_process(setup, tmp_path):
    def autolabel(out: Path) -> list[str]:
        return ["autolabel", *[a for a in _args(setup, out)[1:] if a != "--coco"], "--arch", "m0_6", "--no-pretrained"]

    assert cli_main(autolabel(tmp_path / "one")) == 0
    run = _torchrun(setup, tmp_path / "two", tmp_path, args=autolabel(tmp_path / "two"))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    for name in ("train.json", "val.json", "labels.json"):
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
