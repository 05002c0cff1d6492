"""The built wheel works without the checkout: installed elsewhere and run from another folder, it prints
`segment --help`, generates an autolabel training config from its own configs and serves the Gradio page."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]

GENERATE_CONFIG = r'''
import json, sys
from pathlib import Path
import repvit_plugins
from mmengine.config import Config
from repvit_plugins.jobs.train_config import TrainingSchedule, write_training_config

out = Path(sys.argv[1])
out.mkdir()
(out / "images").mkdir()
paths = {}
for kind in ("rtmdet-ins", "mask-rcnn", "fpn"):
    path = write_training_config(out, ["cat", "dog"], 4, TrainingSchedule(pretrained=False),
                                 images_root=out / "images", kind=kind)
    cfg = Config.fromfile(str(path))  # resolves the whole _base_ chain inside the installed package
    paths[kind] = [str(path), cfg.model.type]
print(json.dumps({"package": repvit_plugins.__file__, "configs": paths}))
'''

SERVE_PAGE = r'''
import json, sys, urllib.request
import repvit_plugins
from repvit_plugins.app import DemoModels, build_app, launch
from repvit_plugins.app.ui import EXAMPLES_DIR

port = int(sys.argv[1])
page = build_app(DemoModels(), max_side=256)
launch(page, port=port, block=False)
html = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=60).read().decode()
page.close()
print(json.dumps({"package": repvit_plugins.__file__, "examples": str(EXAMPLES_DIR),
                  "photos": sorted(p.name for p in EXAMPLES_DIR.glob("*.jpg")), "served": "gradio" in html}))
'''


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel built from this checkout, installed into a folder of its own (the venv supplies the rest)."""
    tmp = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp / "dist"), str(ROOT)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    wheel = next((tmp / "dist").glob("repvit_plugins-*.whl"))
    site = tmp / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                              str(wheel)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "REPVIT_PLUGINS_OFFLINE": "1"}
    return {"site": site, "cwd": elsewhere, "env": env}


def _run(installed, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=installed["cwd"], env=installed["env"], capture_output=True,
                          text=True, timeout=300)


def test_the_wheel_carries_configs_photos_and_types(installed):
    package = installed["site"] / "repvit_plugins"
    assert (package / "py.typed").is_file()
    assert (package / ".mim" / "configs" / "rtmdet_ins" / "rtmdet-ins_repvit-m0.9_8xb32-300e_coco.py").is_file()
    assert (package / ".mim" / "demo" / "images" / "chelsea.jpg").is_file()


def test_segment_help_runs_from_the_installed_package(installed):
    done = _run(installed, "-m", "repvit_plugins", "segment", "--help")
    assert done.returncode == 0, done.stderr
    assert "--speed" in done.stdout and "realtime" in done.stdout


def test_autolabel_configs_are_generated_from_the_installed_configs(installed):
    done = _run(installed, "-c", GENERATE_CONFIG, str(installed["cwd"] / "dataset"))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["package"].startswith(str(installed["site"]))
    assert {kind: model for kind, (_, model) in result["configs"].items()} == {
        "rtmdet-ins": "RTMDet", "mask-rcnn": "MaskRCNN", "fpn": "EncoderDecoder"}
    text = Path(result["configs"]["rtmdet-ins"][0]).read_text()
    assert str(installed["site"] / "repvit_plugins" / ".mim" / "configs") in text and str(ROOT) not in text


def test_the_gradio_page_starts_from_the_installed_package(installed):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = _run(installed, "-c", SERVE_PAGE, str(port))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    site = str(installed["site"])
    assert result["package"].startswith(site) and result["examples"].startswith(site)
    assert "chelsea.jpg" in result["photos"] and result["served"]
