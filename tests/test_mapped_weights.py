"""Checkpoints read into memory (runtime.mapped_weights) and the hf detectors' bf16 loading built on it."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import GroundingDinoForObjectDetection

from repvit_plugins.grounding import build_detector
from repvit_plugins.grounding.hf_backend import load_pretrained
from repvit_plugins.runtime.mapped_weights import OWN_PAGES_BYTES, read_safetensors
from repvit_plugins.runtime.speed import cast_matmul_weights

from ._grounding_fixtures import make_tiny_hf_grounding_dino


def _maps_of(path: Path) -> list[str]:
    maps = Path("/proc/self/maps")
    return [line for line in maps.read_text().splitlines() if str(path) in line] if maps.exists() else []


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    return make_tiny_hf_grounding_dino(tmp_path_factory.mktemp("hf"))


def test_read_safetensors_gives_the_file_s_tensors_in_their_own_memory(tmp_path):
    generator = torch.Generator().manual_seed(0)
    tensors = {
        "big": torch.randn(OWN_PAGES_BYTES // 4 + 3, generator=generator),  # its own pages
        "bf16": torch.randn(3, 5, generator=generator).to(torch.bfloat16),
        "half": torch.randn(7, generator=generator).half(),
        "ids": torch.arange(-4, 6, dtype=torch.int64).reshape(2, 5),
        "mask": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 4),
    }
    path = tmp_path / "w.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt"})
    read = read_safetensors(path)
    assert not _maps_of(path)
    expected = load_file(str(path))
    assert read.keys() == expected.keys()
    for name, tensor in read.items():
        assert tensor.dtype == expected[name].dtype and tensor.shape == expected[name].shape
        assert torch.equal(tensor, expected[name]), name
    read["big"][0] = 7.0  # writable, and a copy: the file is unchanged
    assert read["big"][0] == 7.0 and load_file(str(path))["big"][0] == tensors["big"][0]


def test_read_safetensors_rejects_a_truncated_file(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"w": torch.ones(64)}, str(path))
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(ValueError, match="truncated"):
        read_safetensors(path)


def _bf16_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    cast_matmul_weights(model, "bf16")
    return model.state_dict()


@pytest.mark.parametrize("shard", [None, "200KB"])
def test_bf16_loading_reads_the_weights_the_memory_map_gives(hf_dir, tmp_path, shard):
    """One file or shards: the same tensors as transformers' own (memory-mapped) loading, and no map left."""
    source = hf_dir
    if shard:
        source = tmp_path / "sharded"
        GroundingDinoForObjectDetection.from_pretrained(hf_dir).save_pretrained(source, max_shard_size=shard)
        assert len(list(source.glob("*.safetensors"))) > 1
    loaded = load_pretrained(GroundingDinoForObjectDetection, str(source), True, "bf16")
    assert not _maps_of(source)
    got = _bf16_state(loaded)
    expected = _bf16_state(GroundingDinoForObjectDetection.from_pretrained(source))
    assert got.keys() == expected.keys()
    assert all(torch.equal(got[k], expected[k]) for k in expected)


def test_bf16_detector_loads_without_warnings_and_detects_as_before(hf_dir):
    """No FutureWarning (as from walking every live object) and the detections of float32 weights under autocast."""
    image = np.random.default_rng(4).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        detector = build_detector("hf", model=str(hf_dir), precision="bf16")
    assert not [w for w in caught if issubclass(w.category, FutureWarning)], [str(w.message) for w in caught]
    assert not _maps_of(hf_dir)
    plain = build_detector("hf", model=str(hf_dir))  # float32 weights in transformers' memory map
    plain.precision = "bf16"  # autocast casts them on every call: the same arithmetic
    got = detector.detect(image, "a cat. a dog.", box_threshold=0.0, text_threshold=0.0)[0]
    expected = plain.detect(image, "a cat. a dog.", box_threshold=0.0, text_threshold=0.0)[0]
    assert len(got) == len(expected) > 0
    np.testing.assert_array_equal(got.xyxy, expected.xyxy)
    np.testing.assert_array_equal(got.confidence, expected.confidence)
