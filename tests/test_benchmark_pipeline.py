"""tools/benchmark_pipeline.py end to end on tiny models (a smoke run: no timing is asserted), its YOLOE peer's
skip logic, and the random zoo detectors it builds (repvit_plugins.grounding.random_model)."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from ._grounding_fixtures import make_tiny_hf_grounding_dino
from ._sam_fixtures import SMALL, synthetic_image
from .conftest import TOOLS, run_tool

GROUNDING = Path(__file__).resolve().parents[1] / "repvit_plugins" / "grounding"


def test_benchmark_pipeline_smoke_run(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(synthetic_image(90, 120)).save(images / "a.png")
    (images / "broken.jpg").write_bytes(b"not an image")  # reported and skipped, the run goes on
    detector = make_tiny_hf_grounding_dino(tmp_path)
    done = run_tool("benchmark_pipeline.py", images, "--paths", "baseline", "before", "exact", "balanced", "onnx",
                    "--detector-model", detector, "--sam-arch", SMALL["arch"], "--sam-image-size", SMALL["img_size"],
                    "--prompt", "a cat. a dog.", "--max-detections", 3, "--warmup", 0, "--work-dir", tmp_path / "work",
                    "--json", tmp_path / "bench.json")
    assert done.returncode == 0, done.stderr
    assert "| exact: exact: detector fp32, encoder fp32 |" in done.stdout and "vs before" in done.stdout
    report = json.loads((tmp_path / "bench.json").read_text())
    assert "cores" in report["cpu"]
    paths = report["paths"]
    assert list(paths) == ["baseline", "before", "exact", "balanced", "onnx"]
    for result in paths.values():
        assert result["images"] == 1 and result["failures"] == [{"path": str(images / "broken.jpg"),
                                                                 "stage": "loading"}]
        assert result["seconds_per_image"] > 0 and result["peak_rss_gb"] > 0
        stages = result["stages"]  # the pipeline's own stage hook, plus the benchmark's load and write
        assert set(stages) == {"load", "detect", "encoder", "decoder", "masks", "write"}
        assert sum(stages.values()) == pytest.approx(result["seconds_per_image"], rel=1e-6)
    assert list((tmp_path / "work" / "outputs" / "exact").glob("0.jpg")) and \
        json.loads((tmp_path / "work" / "outputs" / "exact" / "0.json").read_text())[0]["segmentation"]["counts"]
    baseline = paths["baseline"]["agreement"]  # same float32 numerics, decoded box by box
    assert baseline["boxes_matched_iou90"] == 1.0 and baseline["logits_max_abs"] < 1e-3
    assert baseline["mask_iou_same_boxes"] > 0.99
    before = paths["before"]["agreement"]  # transformers' deformable attention: the same up to float32 rounding
    assert before["boxes_matched_iou90"] == 1.0 and before["logits_max_abs"] < 1e-3 and before["boxes_max_abs"] < 1e-4
    assert 0.0 <= paths["balanced"]["agreement"]["mask_iou_end_to_end"] <= 1.0
    assert paths["onnx"]["spec"]["detector_runtime"] == "onnxruntime"  # its agreement: tests/test_grounding_onnx.py
    assert list((tmp_path / "work" / "onnx").glob("grounding_dino_*/b1_*.onnx"))


# -- random zoo detectors: tiny configs of each transformers family --------------------------------------------
def _tiny_text(vocab_size: int) -> dict:
    return dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                num_attention_heads=2)


def _tiny_clip_text(max_positions: int) -> dict:
    """A tiny CLIP text config whose special ids are where write_clip_vocab(size=1000) puts them."""
    return dict(_tiny_text(1000), max_position_embeddings=max_positions, bos_token_id=998, eos_token_id=999,
                pad_token_id=999)


def _tiny_grounding_dino(config_class):
    from transformers import SwinConfig

    from repvit_plugins.grounding.random_model import BENCHMARK_WORDS

    # d_model 64: GroupNorm(32, d_model) needs 2 channels per group; the BERT vocabulary of write_bert_vocab
    return config_class(backbone_config=SwinConfig(image_size=64, embed_dim=8, depths=[1, 1, 1, 1],
                                                   num_heads=[1, 1, 1, 1], window_size=2, out_indices=[2, 3, 4]),
                        text_config=dict(_tiny_text(1030 + len(BENCHMARK_WORDS)), model_type="bert"), d_model=64,
                        encoder_layers=1, decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                        encoder_attention_heads=2, decoder_attention_heads=2, num_queries=20, encoder_n_points=2,
                        decoder_n_points=2)


def _tiny_omdet():
    from transformers import OmDetTurboConfig

    # the default timm Swin-T backbone (whose attn_mask buffers load on the meta device) at 64 px; class_embed_dim
    # differs from decoder_hidden_dim: transformers 4.57 defines the decoder's task_project only then
    return OmDetTurboConfig(text_config=dict(_tiny_clip_text(77), hidden_size=48, model_type="clip_text_model"),
                            image_size=64, text_projection_in_dim=48, text_projection_out_dim=48, class_embed_dim=48,
                            task_encoder_hidden_dim=32, vision_features_channels=[32, 32, 32], encoder_hidden_dim=32,
                            decoder_hidden_dim=32, encoder_dim_feedforward=32, decoder_dim_feedforward=32,
                            decoder_num_layers=1, encoder_attention_heads=2, decoder_num_heads=2, num_queries=20)


def _tiny_owlv2():
    from transformers import Owlv2Config

    return Owlv2Config(projection_dim=32, text_config=_tiny_clip_text(16),
                       vision_config=dict(_tiny_text(0), image_size=64, patch_size=16))


TINY = {  # zoo entry -> (tiny config, backend file its family needs)
    "grounding_dino_tiny": (lambda: _tiny_grounding_dino(__import__("transformers").GroundingDinoConfig),
                            "hf_backend.py"),
    "mm_grounding_dino_tiny": (lambda: _tiny_grounding_dino(__import__("transformers").MMGroundingDinoConfig),
                               "hf_backend.py"),
    "omdet_turbo_tiny": (_tiny_omdet, "omdet_backend.py"),
    "owlv2_base": (_tiny_owlv2, "owlv2_backend.py"),
}


@pytest.mark.parametrize("name", list(TINY))
def test_random_detector_loads_through_build_detector(tmp_path, name):
    from repvit_plugins.grounding import build_detector
    from repvit_plugins.grounding.detector_zoo import DETECTORS, hf_family
    from repvit_plugins.grounding.random_model import save_random_detector

    make_config, backend = TINY[name]
    if not (GROUNDING / backend).is_file():
        pytest.skip(f"{backend} is not written yet")
    folder = save_random_detector(name, tmp_path / name, config=make_config())
    assert hf_family(str(folder)) == DETECTORS[name].family
    detector = build_detector("hf", model=str(folder), box_threshold=0.0, text_threshold=0.0, max_detections=5)
    found = detector.detect(synthetic_image(90, 120), "a cat. a person.")[0]
    assert 0 < len(found) <= 5 and set(found.class_id) <= {0, 1}  # degenerate random boxes are dropped
    assert (found.xyxy[:, 2:] <= [120, 90]).all() and (found.xyxy >= 0).all()


def test_clip_tokenizer_spells_the_benchmark_words_as_single_tokens(tmp_path):
    from repvit_plugins.grounding.random_model import clip_tokenizer

    tokenizer = clip_tokenizer(tmp_path)
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("a cat. the person").input_ids)
    assert tokens == ["<|startoftext|>", "a</w>", "cat</w>", ".</w>", "the</w>", "person</w>", "<|endoftext|>"]
    assert tokenizer.convert_ids_to_tokens(tokenizer("zebra").input_ids)[1:-1] == list("zebr") + ["a</w>"]


def test_full_size_configs_have_the_published_shapes():
    from repvit_plugins.grounding.random_model import random_detector_config

    owl = random_detector_config("owlv2_base")  # owlv2-base-patch16
    assert (owl.vision_config.image_size, owl.vision_config.patch_size, owl.text_config.hidden_size) == (960, 16, 512)
    for name, width in (("grounding_dino_tiny", 96), ("grounding_dino_base", 128), ("mm_grounding_dino_tiny", 96),
                        ("llmdet_base", 128)):
        config = random_detector_config(name)
        assert (config.backbone_config.embed_dim, config.text_config.hidden_size) == (width, 768), name
    omdet = random_detector_config("omdet_turbo_tiny")
    assert (omdet.image_size, omdet.backbone, omdet.text_config.hidden_size) == (
        640, "swin_tiny_patch4_window7_224", 512)
    with pytest.raises(ValueError, match="transformers entries"):
        random_detector_config("groundingdino_swint_ogc")


@pytest.mark.slow  # four child processes, about a minute on 2 shared cores
def test_benchmark_zoo_realtime_and_peer_paths(tmp_path):
    """det:NAME and realtime run their zoo entry's model (tiny ones via --zoo-model), YOLOE runs or is skipped."""
    from repvit_plugins.grounding.random_model import save_random_detector

    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(synthetic_image(90, 120)).save(images / "a.png")
    omdet = save_random_detector("omdet_turbo_tiny", tmp_path / "omdet", config=_tiny_omdet())
    owlv2 = save_random_detector("owlv2_base", tmp_path / "owlv2", config=_tiny_owlv2())
    done = run_tool("benchmark_pipeline.py", images, "--paths", "det:omdet_turbo_tiny", "det:owlv2_base", "realtime",
                    "yoloe-11s-seg", "--zoo-model", f"omdet_turbo_tiny={omdet}", "--zoo-model", f"owlv2_base={owlv2}",
                    "--sam-arch", SMALL["arch"], "--sam-image-size", SMALL["img_size"], "--max-detections", 3,
                    "--warmup", 0, "--work-dir", tmp_path / "work", "--json", tmp_path / "bench.json")
    assert done.returncode == 0, done.stderr
    paths = json.loads((tmp_path / "bench.json").read_text())["paths"]
    assert list(paths) == ["det:omdet_turbo_tiny", "det:owlv2_base", "realtime", "yoloe-11s-seg"]
    for name in ("det:omdet_turbo_tiny", "det:owlv2_base", "realtime"):
        result = paths[name]
        assert result["images"] == 1 and result["failures"] == [] and "agreement" not in result
        assert set(result["stages"]) == {"load", "detect", "encoder", "decoder", "masks", "write"}
        assert 0 < result["boxes_per_image"] <= 3
    realtime = paths["realtime"]["spec"]
    assert (realtime["detector"], realtime["sam"]) == ("omdet_turbo_tiny", "edge_sam")
    assert paths["det:omdet_turbo_tiny"]["spec"]["sam"] == "repvit_sam"
    assert (tmp_path / "work" / "outputs" / "det-owlv2_base" / "0.json").is_file()
    peer = paths["yoloe-11s-seg"]
    if "skipped" in peer:
        assert "pip install --no-deps ultralytics" in peer["skipped"]
    else:
        assert set(peer["stages"]) == {"load", "detect", "masks", "write"} and peer["images"] == 1
        assert "realtime vs YOLOE-11s-seg: " in done.stdout
    assert not list((tmp_path / "work").glob("random-*"))  # every detector was given


# -- the YOLOE peer ---------------------------------------------------------------------------------------------
def test_yoloe_path_is_skipped_with_the_install_command_when_ultralytics_does_not_import(tmp_path):
    stub = tmp_path / "stub" / "ultralytics"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text('raise ImportError("no ultralytics in this test")\n')
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(synthetic_image(90, 120)).save(images / "a.png")
    done = subprocess.run([sys.executable, str(TOOLS / "benchmark_pipeline.py"), images, "--paths", "yoloe-11s-seg",
                           "--warmup", "0", "--work-dir", tmp_path / "work", "--json", tmp_path / "bench.json"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(stub.parent)})
    assert done.returncode == 0, done.stderr
    skipped = json.loads((tmp_path / "bench.json").read_text())["paths"]["yoloe-11s-seg"]["skipped"]
    assert "no ultralytics in this test" in skipped and "pip install --no-deps ultralytics==8.4.190" in skipped
    assert f"yoloe-11s-seg: skipped: {skipped}" in done.stdout


_PEER_CHECK = """
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from yoloe_peer import YoloePeer
image = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
found = YoloePeer("yoloe-11s-seg", ["cat", "person"], max_detections=4).predict(image)
print(json.dumps({"boxes": len(found), "classes": sorted({int(c) for c in found.class_id}),
                  "mask": [list(found.mask.shape), str(found.mask.dtype)],
                  "confidence": type(found.confidence).__name__,
                  "text_model_imported": "ultralytics.nn.text_model" in sys.modules}))
"""


def test_yoloe_peer_segments_offline_when_ultralytics_is_installed():
    """In a child process, as the benchmark runs it: importing ultralytics patches PIL.Image.open, cv2 and
    torch.load process-wide, which would leak into the other tests."""
    if importlib.util.find_spec("ultralytics") is None:  # found, not imported: importing it is the leak
        pytest.skip("the peer is measured only where ultralytics is installed")
    done = subprocess.run([sys.executable, "-c", _PEER_CHECK, str(TOOLS)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["boxes"] <= 4 and set(found["classes"]) <= {0, 1}  # random weights: few boxes survive its NMS
    assert found["mask"] == [[found["boxes"], 90, 120], "bool"] and found["confidence"] == "ndarray"
    assert not found["text_model_imported"]  # importing it pip-installs CLIP


@pytest.mark.slow
@pytest.mark.parametrize("name", ["groundingdino_swint_ogc", "mmdet_grounding_dino"])
def test_random_backend_detectors_load_and_detect(tmp_path, name):
    """The benchmark's det: paths of the groundingdino-py and mmdet entries: full-size Grounding DINO-T built at
    random offline (a small BERT here), saved, loaded back by the library's own backend and run on an image."""
    from transformers import BertConfig

    from repvit_plugins.grounding import build_detector
    from repvit_plugins.grounding.detector_zoo import DETECTORS
    from repvit_plugins.grounding.random_backends import backend_detector_arguments, save_random_backend_detector

    bert = BertConfig(vocab_size=1042, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=37)
    folder = save_random_backend_detector(name, tmp_path / name, bert_config=bert)
    arguments = backend_detector_arguments(folder)
    assert arguments is not None and arguments.pop("backend") == DETECTORS[name].backend
    assert backend_detector_arguments(tmp_path) is None
    # 256 x 384 gives the encoder more tokens than the 900 queries it selects from
    detector = build_detector(DETECTORS[name].backend, image_size=256, max_size=384, **arguments)
    image = synthetic_image(90, 120)
    found = detector.detect(image, "a cat. a dog.", box_threshold=0.0, text_threshold=0.0)[0]
    assert len(found) > 0 and set(found.data["class_name"]) <= {"a cat", "a dog"}
    assert (found.xyxy >= 0).all() and (found.xyxy[:, [0, 2]] <= 120).all() and (found.xyxy[:, [1, 3]] <= 90).all()


def test_every_detector_entry_has_a_benchmark_path():
    from repvit_plugins.bench.pipeline_paths import PATHS
    from repvit_plugins.grounding.detector_zoo import DETECTORS

    assert {f"det:{name}" for name in DETECTORS} <= set(PATHS)
