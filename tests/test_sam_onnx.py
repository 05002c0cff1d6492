"""ONNX export and onnxruntime: encoder and decoder parity with PyTorch, the onnxruntime backend, the tools."""
from __future__ import annotations

import copy
import json
import os
from importlib.util import find_spec

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from repvit_plugins.bench.numeric_agreement import relative_error  # noqa: E402
from repvit_plugins.models import build_repvit_sam  # noqa: E402
from repvit_plugins.sam import SamSegmenter  # noqa: E402
from repvit_plugins.sam.decoder_inputs import decoder_feeds  # noqa: E402
from repvit_plugins.sam.onnx_export import PromptDecoder, check_decoder, check_encoder  # noqa: E402
from repvit_plugins.sam.ort_backend import OrtImageEncoder, OrtPromptDecoder  # noqa: E402

from ._sam_fixtures import SMALL, small_sam, synthetic_image  # noqa: E402
from .conftest import run_tool  # noqa: E402

BOXES = np.array([[20, 30, 150, 180], [100, 40, 290, 190], [5, 5, 60, 50]], dtype=np.float32)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """tools/export_onnx.py on a small random checkpoint: (checkpoint, encoder.onnx, decoder.onnx)."""
    root = tmp_path_factory.mktemp("onnx")
    torch.save(small_sam().state_dict(), root / "sam.pt")
    done = run_tool("export_onnx.py", "--checkpoint", root / "sam.pt", "--arch", SMALL["arch"], "--img-size",
                    SMALL["img_size"], "--output-dir", root, "--name", "small", "--check",
                    "--quantize")  # int8 calibrated on the demo images
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("relative error") == 2 and (root / "small_encoder.int8.onnx").is_file()
    return root / "sam.pt", root / "small_encoder.onnx", root / "small_decoder.onnx"


@pytest.fixture(scope="module")
def sam(exported):
    return build_repvit_sam(exported[0], **SMALL)


@pytest.fixture(scope="module")
def ort_decoder(exported):
    return OrtPromptDecoder(exported[2])


def test_encoder_and_decoder_onnxruntime_match_pytorch(sam, exported):
    assert check_encoder(sam, exported[1]) <= 1e-4  # unfused PyTorch vs the fused graph
    assert check_decoder(sam, exported[2]) <= 1e-4


PROMPTS = {
    "one point": (1, 1, False, False),
    "points": (4, 3, False, False),
    "boxes": (7, 0, True, False),
    "points+box+mask": (3, 2, True, True),
}


@pytest.mark.parametrize("kind", list(PROMPTS))
def test_decoder_onnxruntime_matches_pytorch_any_count(sam, ort_decoder, kind):
    count, points, with_box, with_mask = PROMPTS[kind]
    gen = torch.Generator().manual_seed(count)
    coords = torch.rand(count, points, 2, generator=gen) * 256 if points else None
    labels = torch.randint(0, 2, (count, points), generator=gen) if points else None
    boxes = (torch.sort(torch.rand(count, 2, 2, generator=gen) * 256, dim=1).values.reshape(count, 4) if with_box
             else None)
    masks = torch.randn(count, 1, 64, 64, generator=gen) if with_mask else None
    feeds = decoder_feeds(torch.randn(1, 256, 16, 16, generator=gen), coords, labels, boxes, masks, (64, 64))
    with torch.no_grad():
        low_res, iou = PromptDecoder(sam)(**feeds)
        # the wrapper is segment_anything's prompt encoder + decoder
        sparse, dense = sam.prompt_encoder((coords, labels) if points else None, boxes, masks)
        expected, _ = sam.mask_decoder(feeds["image_embeddings"], sam.prompt_encoder.get_dense_pe(), sparse, dense,
                                       True)
    assert torch.allclose(low_res[:, 1:], expected, atol=1e-5 * expected.abs().max())
    ort_low_res, ort_iou = ort_decoder(feeds)
    assert ort_low_res.shape == (count, 4, 64, 64) and ort_iou.shape == (count, 4)
    assert relative_error(ort_low_res, low_res) <= 1e-4 and relative_error(ort_iou, iou) <= 1e-4


def test_onnxruntime_backend_in_the_segmenter(sam, exported):
    image = synthetic_image()
    torch_seg = SamSegmenter(copy.deepcopy(sam))
    torch_seg.set_image(image)
    ort_seg = SamSegmenter(copy.deepcopy(sam), backend="onnxruntime", encoder_onnx=exported[1],
                           decoder="onnxruntime", decoder_onnx=exported[2])
    ort_seg.set_image(image)
    embedding, expected = ort_seg.get_image_embedding(), torch_seg.get_image_embedding()
    assert relative_error(embedding, expected) <= 1e-4
    masks, scores = ort_seg.predict_boxes(BOXES, multimask_output=True)
    ref_masks, ref_scores = torch_seg.predict_boxes(BOXES, multimask_output=True)
    assert (masks == ref_masks).mean() > 0.999 and np.allclose(scores, ref_scores, atol=1e-4)
    points = (np.array([[60.0, 70.0], [200.0, 120.0]]), np.array([1, 0]))
    ort_points, torch_points = ort_seg.predict_points(*points), torch_seg.predict_points(*points)
    assert np.abs(ort_points[2] - torch_points[2]).max() <= 1e-3 * np.abs(torch_points[2]).max()


def test_onnxruntime_backend_exports_once_into_the_cache(sam):
    from repvit_plugins.weights.zoo import cache_dir

    SamSegmenter(copy.deepcopy(sam), backend="onnxruntime")  # exports the encoder into the model cache
    files = list((cache_dir() / "onnx").glob("sam_encoder_256_*.onnx"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    segmenter = SamSegmenter(copy.deepcopy(sam), backend="onnxruntime")
    assert files[0].stat().st_mtime_ns == stamp and segmenter.model.image_encoder.path == files[0]


def test_static_int8_encoder_is_close_and_keeps_stem_and_neck_float(sam, exported, tmp_path):
    import onnx

    from repvit_plugins.sam.quantize import encoder_inputs, quantize_encoder_int8

    path = quantize_encoder_int8(exported[1], tmp_path / "int8.onnx", [synthetic_image(seed=s) for s in (1, 2, 3)])
    graph = onnx.load(str(path)).graph
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    quantized = [n.input[1] in dequantized for n in convs]  # weights read through DequantizeLinear
    assert quantized[0] is False and quantized[-2:] == [False, False] and all(quantized[1:-2])
    assert not list(tmp_path.glob("*.part"))
    held_out = torch.from_numpy(encoder_inputs([synthetic_image(seed=7)], 256)[0])
    with torch.no_grad():
        reference = sam.image_encoder(held_out)
    out = OrtImageEncoder(path, 256)(held_out)
    error = float((out - reference).abs().mean() / reference.std())
    print(f"int8 embedding error {error:.3e}")
    assert 1e-4 < error < 0.1  # really quantized, and close
    with pytest.raises(ValueError, match="at least one image"):
        quantize_encoder_int8(exported[1], tmp_path / "none.onnx", [])


def test_int8_calibration_equals_onnxruntimes_own(exported, tmp_path):
    """The arena-free calibration (12 GB flat on SAM ViT-B instead of growing 5 GB per image) finds the same ranges."""
    from onnxruntime.quantization.calibrate import create_calibrator, load_tensors_data
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from repvit_plugins.sam.quantize import QUANTIZED_OPS, _calibrate, _Feeds, encoder_inputs

    prepared = tmp_path / "prepared.onnx"
    quant_pre_process(str(exported[1]), str(prepared), skip_symbolic_shape=True)
    feeds = [{"image": x} for x in encoder_inputs([synthetic_image(seed=s) for s in (1, 2)], 256)]
    ours = load_tensors_data(_calibrate(prepared, feeds, tmp_path, False))
    theirs = create_calibrator(prepared, list(QUANTIZED_OPS), augmented_model_path=str(tmp_path / "aug.onnx"))
    theirs.collect_data(_Feeds(feeds))
    theirs = theirs.compute_data()
    assert set(ours.data) == set(theirs.data) and len(ours.data) > 10
    for name, value in theirs.data.items():
        assert np.array_equal(ours.data[name].range_value, value.range_value), name


def test_a_calibration_killed_for_memory_is_an_error_that_says_so():
    from repvit_plugins.sam.quantize import run_in_child

    from ._child_processes import exit_quietly, kill_myself, pid_of_child

    assert run_in_child(pid_of_child, what="x") != os.getpid()  # really another process
    with pytest.raises(MemoryError, match=r"int8 calibration of big.onnx was killed \(SIGKILL\), most likely for lack"):
        run_in_child(kill_myself, what="int8 calibration of big.onnx")
    with pytest.raises(RuntimeError, match="died with exit code 3"):
        run_in_child(exit_quietly, 3, what="x")
    with pytest.raises(ValueError, match="at least one image"):  # an error in the child is raised as itself
        run_in_child(quantize_encoder_int8_of_nothing, what="x")


def quantize_encoder_int8_of_nothing():
    from repvit_plugins.sam.quantize import quantize_encoder_int8

    return quantize_encoder_int8("any.onnx", "out.onnx", [])


def test_encoder_inputs_match_sam_preprocessing(sam):
    from segment_anything import SamPredictor

    from repvit_plugins.sam.quantize import encoder_inputs

    image = synthetic_image()
    predictor = SamPredictor(sam)
    transformed = predictor.transform.apply_image(image)
    expected = sam.preprocess(torch.as_tensor(transformed).permute(2, 0, 1)[None].float())
    assert torch.allclose(torch.from_numpy(encoder_inputs([image], 256)[0]), expected, atol=1e-5)


@pytest.mark.skipif(find_spec("coremltools") is not None, reason="coremltools is installed")
def test_coreml_export_explains_missing_coremltools(sam, tmp_path):
    from repvit_plugins.sam.coreml_export import convert_encoder

    with pytest.raises(ImportError, match="pip install coremltools"):
        convert_encoder(sam, tmp_path / "encoder.mlpackage")
    done = run_tool("export_coreml.py", "--random-weights")
    assert done.returncode == 2 and "pip install coremltools" in done.stderr


@pytest.mark.slow
@pytest.mark.skipif(find_spec("coremltools") is None, reason="coremltools is not installed (optional extra)")
def test_coreml_conversion(tmp_path, exported):
    done = run_tool("export_coreml.py", "--checkpoint", exported[0], "--arch", SMALL["arch"], "--img-size",
                    SMALL["img_size"], "--output-dir", tmp_path, "--precision", "fp32")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "repvit_sam_encoder.mlpackage").exists()
    assert (tmp_path / "repvit_sam_decoder.mlpackage").exists()


@pytest.mark.slow
def test_benchmark_sam_smoke_run(tmp_path):
    """tools/benchmark_sam.py end to end on a tiny model: every path measured, ratios and the compute floor printed."""
    done = run_tool("benchmark_sam.py", "--quick", "--arch", SMALL["arch"], "--img-size", SMALL["img_size"],
                    "--iters", "1", "--decoder-iters", "1", "--boxes", "2", "--work-dir", tmp_path,
                    "--json", tmp_path / "bench.json")
    assert done.returncode == 0, done.stderr
    assert "compute floor" in done.stdout and "best float RepViT-SAM path" in done.stdout
    results = json.loads((tmp_path / "bench.json").read_text())["results"]["mallopt"]
    assert results["_tuned"] and results["_macs"] > 0 and results["_gemm_gflops"] > 0
    for name in ("unfused eager", "fused", "fused + channels_last", "onnxruntime (fused)", "onnxruntime int8"):
        assert results[f"encoder: {name}"]["s"] > 0
    assert results["encoder: onnxruntime (fused)"]["mask_iou"] > 0.999
    assert 0.5 < results["encoder: onnxruntime int8"]["mask_iou"] <= 1.0
    assert results["decoder fast: 2 boxes, one call"]["per_box"] > 0
