"""The detector zoo as data, the family read from config.json, the realtime preset and what it records."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from repvit_plugins.cli import main as cli_main
from repvit_plugins.grounding import build_detector
from repvit_plugins.grounding.detector_zoo import (
    DETECTORS,
    HF_FAMILIES,
    detector_table,
    hf_family,
    resolve_detector_model,
)
from repvit_plugins.jobs.settings import run_settings
from repvit_plugins.options import ModelOptions, PipelineOptions
from repvit_plugins.weights.preflight import needed_weights

from ._grounding_fixtures import make_tiny_hf_grounding_dino


@pytest.fixture(scope="module")
def gdino_dir(tmp_path_factory):
    return make_tiny_hf_grounding_dino(tmp_path_factory.mktemp("zoo"))


def test_every_entry_names_its_weights_licence_and_published_ap():
    required = {"grounding_dino_tiny", "grounding_dino_base", "mm_grounding_dino_tiny", "llmdet_tiny", "llmdet_base",
                "omdet_turbo_tiny", "owlv2_base", "groundingdino_swint_ogc", "mmdet_grounding_dino"}
    assert required <= set(DETECTORS)
    for spec in DETECTORS.values():
        assert spec.backend in ("hf", "original", "mmdet") and spec.licence and spec.input_size and spec.ap_source
        if spec.backend == "hf":
            assert spec.family in HF_FAMILIES and spec.source.count("/") == 1
    assert DETECTORS["omdet_turbo_tiny"].coco_ap == 42.5 and DETECTORS["grounding_dino_tiny"].coco_ap == 48.4
    table = detector_table()
    assert table.count("\n") == len(DETECTORS) + 1 and "| 50.6 | 41.4 |" in table


def test_names_resolve_to_hub_ids_and_families_come_from_config_json(gdino_dir, tmp_path):
    assert resolve_detector_model(None) == "IDEA-Research/grounding-dino-tiny"
    assert resolve_detector_model("omdet_turbo_tiny") == "omlab/omdet-turbo-swin-tiny-hf"
    assert resolve_detector_model(str(gdino_dir)) == str(gdino_dir)
    with pytest.raises(ValueError, match="--detector original"):
        resolve_detector_model("groundingdino_swint_ogc")
    assert hf_family(str(gdino_dir)) == "grounding-dino"
    assert hf_family("omdet_turbo_tiny") == "omdet-turbo"  # not cached here: from the entry
    assert hf_family("llmdet_base") == "mm-grounding-dino"
    assert hf_family("someone/not-in-the-zoo") is None  # its loader fetches config.json
    # a renamed folder is still recognised by its config.json, and a foreign family is refused with the list
    renamed = tmp_path / "my-detector"
    renamed.mkdir()
    (renamed / "config.json").write_text(json.dumps({"model_type": "omdet-turbo"}))
    assert hf_family(str(renamed)) == "omdet-turbo"
    (renamed / "config.json").write_text(json.dumps({"model_type": "detr"}))
    with pytest.raises(ValueError, match="model_type 'detr'.*grounding-dino, mm-grounding-dino"):
        hf_family(str(renamed))


def test_the_factory_dispatches_a_folder_by_its_family(gdino_dir):
    from repvit_plugins.grounding.hf_backend import HFGroundingDetector

    detector = build_detector("hf", model=str(gdino_dir))
    assert isinstance(detector, HFGroundingDetector)


def test_realtime_picks_the_fastest_models_and_explicit_flags_override():
    realtime = ModelOptions(speed="realtime", device="cpu")
    assert realtime.resolved_detector_model == "omdet_turbo_tiny" and realtime.resolved_sam_model == "edge_sam"
    mine = realtime.replace(detector_model="/models/gdino", sam_model="repvit_sam")
    assert mine.resolved_detector_model == "/models/gdino" and mine.resolved_sam_model == "repvit_sam"
    # other presets keep the default models
    balanced = ModelOptions(device="cpu")
    assert balanced.resolved_detector_model is None and balanced.resolved_sam_model == "repvit_sam"
    # another backend keeps its own detector under realtime
    assert realtime.replace(detector="original").resolved_detector_model is None


def test_realtime_is_recorded_so_a_resume_refuses_a_mix(monkeypatch):
    from repvit_plugins.runtime import speed

    monkeypatch.setattr(speed, "native_cpu_bf16", lambda: True)
    realtime = run_settings("a cat.", ModelOptions(speed="realtime", device="cpu"), PipelineOptions())
    assert realtime["detector_model"] == "omdet_turbo_tiny" and realtime["sam_model"] == "edge_sam"
    assert realtime["speed_path"] == "realtime: detector omdet_turbo_tiny bf16, encoder (edge_sam) bf16, decoder bf16"
    balanced = run_settings("a cat.", ModelOptions(device="cpu"), PipelineOptions())
    assert balanced["sam_model"] == "repvit_sam" and balanced["speed_path"] == "balanced: detector bf16, encoder bf16"
    differing = {k for k in realtime if realtime[k] != balanced[k]}
    assert differing == {"speed", "detector_model", "sam_model", "speed_path"}


def test_preflight_lists_the_realtime_models():
    needs = needed_weights(ModelOptions(speed="realtime", device="cpu"))
    assert [(n.kind, n.spec) for n in needs] == [("hub", "omlab/omdet-turbo-swin-tiny-hf"), ("zoo", "edge_sam")]
    onnx = needed_weights(ModelOptions(detector_model="student.onnx", device="cpu"), sam=False)
    assert [(n.kind, n.spec) for n in onnx] == [("file", "student.onnx")]


def test_download_defaults_to_what_segment_needs(monkeypatch, tmp_path, capsys):
    """Offline, `download` with no names tries RepViT-SAM and Grounding DINO-T, and says what to do for each."""
    monkeypatch.setenv("REPVIT_PLUGINS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("REPVIT_PLUGINS_HOME", str(tmp_path / "zoo"))
    assert cli_main(["download"]) == 1
    printed = capsys.readouterr().out
    assert "repvit_sam: could not download repvit_sam.pt (REPVIT_PLUGINS_OFFLINE is set)" in printed
    assert "grounding_dino_tiny:" in printed and "huggingface-cli download IDEA-Research/grounding-dino-tiny" in printed
    assert cli_main(["download", "--list"]) == 0
    listing = capsys.readouterr().out
    assert "omdet_turbo_tiny" in listing and "https://huggingface.co/omlab/omdet-turbo-swin-tiny-hf" in listing


def test_a_class_longer_than_the_text_encoder_is_refused_before_models_load(gdino_dir, tmp_path, capsys):
    image = tmp_path / "image.png"
    from PIL import Image

    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    sam = tmp_path / "sam.pt"
    from repvit_plugins.models import build_repvit_sam

    torch.save(build_repvit_sam(arch="m0_6", img_size=64).state_dict(), sam)
    long_class = " ".join(["red"] * 300)
    code = cli_main(["segment", str(image), "--prompt", f"a cat. {long_class}.", "--out", str(tmp_path / "out"),
                     "--detector-model", str(gdino_dir), "--sam-checkpoint", str(sam), "--sam-arch", "m0_6",
                     "--sam-image-size", "64", "--no-progress"])
    assert code == 2
    assert "is 300 tokens long, more than the text encoder's limit of 256" in capsys.readouterr().err
    assert not (Path(tmp_path / "out") / "summary.json").exists()


@pytest.fixture(scope="module")
def realtime_models(tmp_path_factory):
    """A tiny OmDet-Turbo folder and a small random EdgeSAM checkpoint (the realtime preset's families)."""
    from repvit_plugins.models.sam_registry import build_sam

    from ._omdet_fixtures import make_tiny_omdet_turbo

    tmp = tmp_path_factory.mktemp("realtime")
    torch.manual_seed(0)
    edge_sam = tmp / "edge_sam_random.pth"
    torch.save(build_sam("edge_sam", img_size=128).state_dict(), edge_sam)
    return {"omdet": make_tiny_omdet_turbo(tmp), "edge_sam": edge_sam}


def test_the_factory_builds_omdet_turbo_from_its_folder(realtime_models):
    from repvit_plugins.grounding.omdet_backend import OmDetTurboDetector

    detector = build_detector("hf", model=str(realtime_models["omdet"]), box_threshold=0.0)
    assert isinstance(detector, OmDetTurboDetector)
    found = detector.detect(np.full((48, 64, 3), 127, np.uint8), "a cat. a dog.")[0]
    assert len(found) > 0 and set(found.data["class_name"]) <= {"a cat", "a dog"}


@pytest.mark.slow
def test_segment_realtime_runs_omdet_and_edge_sam_and_refuses_a_resumed_mix(realtime_models, tmp_path, capsys):
    """`segment --speed realtime` end to end: the preset's SAM (EdgeSAM) is built, settings record both picks."""
    photo = Path(__file__).resolve().parents[1] / "demo" / "images" / "chelsea.jpg"
    out = tmp_path / "out"
    common = [str(photo), "--prompt", "a cat. a dog.", "--out", str(out), "--detector-model",
              str(realtime_models["omdet"]), "--sam-checkpoint", str(realtime_models["edge_sam"]),
              "--sam-image-size", "128", "--box-threshold", "0.0", "--max-detections", "3", "--no-progress"]
    assert cli_main(["segment", *common, "--speed", "realtime", "--coco"]) == 0
    for recorded in (json.loads((out / name).read_text()) for name in ("run.json", "summary.json")):
        assert recorded["speed"] == "realtime" and recorded["sam_model"] == "edge_sam"
        assert recorded["detector_model"] == str(realtime_models["omdet"])
        assert recorded["speed_path"].startswith(f"realtime: detector {realtime_models['omdet']} ")
    coco = json.loads((out / "annotations.json").read_text())
    assert len(coco["annotations"]) == 3 and {c["name"] for c in coco["categories"]} == {"a cat", "a dog"}
    capsys.readouterr()
    # the same folder with another preset is refused (its SAM would differ): nothing is mixed
    assert cli_main(["segment", *common, "--speed", "balanced", "--sam-model", "edge_sam"]) == 2
    assert "speed" in capsys.readouterr().err


def test_the_demo_runs_the_detector_of_the_chosen_speed(realtime_models, gdino_dir):
    from repvit_plugins.app import DemoModels
    from repvit_plugins.app.services import prepare_image, run_text_mode
    from repvit_plugins.models.sam_registry import build_sam
    from repvit_plugins.sam import SamSegmenter

    built = []

    def speed_factory(speed: str):
        built.append(speed)
        return build_detector("hf", model=str(realtime_models["omdet"]), box_threshold=0.0, max_detections=2)

    models = DemoModels(detector=build_detector("hf", model=str(gdino_dir)),
                        segmenter=SamSegmenter(sam=build_sam("edge_sam", img_size=128)),
                        speed="balanced", speed_factory=speed_factory)
    prepared = prepare_image(np.full((40, 60, 3), 90, np.uint8), 64)
    for _ in range(2):
        _, rows, _ = run_text_mode(models, prepared, "a cat.", None, None, "realtime")
        assert len(rows) == 2  # the OmDet detector's own max_detections
    assert built == ["realtime"]  # built once, on first use
    assert models.get_detector("balanced") is models.detector
