"""With the network blocked: the main job lists every missing weight in seconds, and runs from caches."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from repvit_plugins.options import ModelOptions
from repvit_plugins.weights.preflight import MissingWeightsError, check_weights

from ._grounding_fixtures import make_tiny_hf_grounding_dino

PHOTO = Path(__file__).resolve().parents[1] / "demo" / "images" / "chelsea.jpg"
BLOCK_NETWORK = '''
import socket

def _blocked(*args, **kwargs):
    raise OSError(101, "Network is unreachable (blocked by the test)")

socket.socket.connect = _blocked
socket.socket.connect_ex = _blocked
socket.create_connection = _blocked
socket.getaddrinfo = _blocked
'''


def _offline_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No offline switches, empty caches, and a sitecustomize that makes every connection fail."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCK_NETWORK)
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "REPVIT_PLUGINS_OFFLINE")}
    env.update(PYTHONPATH=os.pathsep.join([str(site), env.get("PYTHONPATH", "")]),
               REPVIT_PLUGINS_HOME=str(tmp_path / "zoo"), HF_HOME=str(tmp_path / "hf"), **extra)
    return env


def _segment(env: dict[str, str], out: Path, *extra: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "repvit_plugins", "segment", str(PHOTO), "--prompt", "a cat.",
                             "--out", str(out), "--coco", "--no-progress", *extra],
                            env=env, capture_output=True, text=True, timeout=120)
    return result, time.monotonic() - start


@pytest.mark.parametrize("switch", [{}, {"HF_HUB_OFFLINE": "1"}, {"REPVIT_PLUGINS_OFFLINE": "1"}])
def test_main_job_lists_every_missing_weight_within_seconds(tmp_path, switch):
    result, seconds = _segment(_offline_env(tmp_path, **switch), tmp_path / "out")
    assert result.returncode == 2, result.stdout + result.stderr
    assert seconds < 10, f"took {seconds:.1f} s"
    err = result.stderr
    assert err.count("model file(s) needed by this command are missing") == 1
    assert "IDEA-Research/grounding-dino-tiny" in err and "huggingface-cli download" in err
    assert "repvit_sam.pt" in err and str(tmp_path / "zoo" / "repvit_sam.pt") in err
    assert "Traceback" not in err and "Retry" not in err
    assert not (tmp_path / "out").exists()  # nothing started


def test_cached_models_run_with_the_network_blocked(tmp_path):
    """A hub model in the Hugging Face cache and a local SAM file: the job runs, no network needed."""
    from repvit_plugins.models import build_repvit_sam

    model = make_tiny_hf_grounding_dino(tmp_path / "gd")
    snapshot = tmp_path / "hf" / "hub" / "models--IDEA-Research--grounding-dino-tiny"
    shutil.copytree(model, snapshot / "snapshots" / ("0" * 40))
    (snapshot / "refs").mkdir()
    (snapshot / "refs" / "main").write_text("0" * 40)
    torch.save(build_repvit_sam(arch="m0_6", img_size=256).state_dict(), tmp_path / "sam.pt")
    result, _ = _segment(_offline_env(tmp_path), tmp_path / "out", "--sam-checkpoint", str(tmp_path / "sam.pt"),
                         "--sam-arch", "m0_6", "--sam-image-size", "256")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "annotations.json").is_file()
    assert "Retry" not in result.stderr


def test_check_weights_names_local_paths_and_flags(tmp_path):
    options = ModelOptions(detector_model=str(tmp_path / "no_model"), sam_checkpoint=str(tmp_path / "no.pt"),
                           sam_encoder_onnx=str(tmp_path / "enc.onnx"))
    with pytest.raises(MissingWeightsError) as info:
        check_weights(options)
    assert [m.need.flag for m in info.value.missing] == ["--detector-model", "--sam-checkpoint", "--sam-encoder-onnx"]
    assert str(tmp_path / "no_model") in str(info.value) and str(tmp_path / "no.pt") in str(info.value)


def test_check_weights_passes_when_everything_is_local(tmp_path):
    model = make_tiny_hf_grounding_dino(tmp_path / "gd")
    (tmp_path / "sam.pt").write_bytes(b"")
    check_weights(ModelOptions(detector_model=str(model), sam_checkpoint=str(tmp_path / "sam.pt")))


def test_original_backend_needs_its_checkpoint_and_bert(tmp_path):
    with pytest.raises(MissingWeightsError) as info:
        check_weights(ModelOptions(detector="original", sam_checkpoint=str(tmp_path / "x.pt")))
    what = [m.need.what for m in info.value.missing]
    assert what == ["detector checkpoint", "BERT text encoder", "SAM checkpoint (repvit_sam)"]
    assert "groundingdino_swint_ogc.pth" in str(info.value)
