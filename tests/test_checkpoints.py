"""Checkpoint containers, layouts, safety, and the download cache (loopback HTTP only)."""
from __future__ import annotations

import functools
import hashlib
import http.server
import os
import threading
from pathlib import Path

import pytest
import torch

from repvit_plugins.models import build_repvit
from repvit_plugins.models.repvit_keys import official_to_timm
from repvit_plugins.weights.checkpoint_io import CheckpointError, load_checkpoint_file
from repvit_plugins.weights.zoo import ZOO, ZooEntry, cache_dir, download, resolve_checkpoint

from .conftest import randomize_batchnorm


@pytest.fixture(scope="module")
def reference():
    return randomize_batchnorm(build_repvit("m0_9", distillation=True)).eval()


def _assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sb)


@pytest.mark.parametrize("container", ["raw", "model", "state_dict_backbone", "timm", "module_prefix"])
def test_accepted_containers(tmp_path, reference, container):
    state = reference.state_dict()
    payload = {
        "raw": state,
        "model": {"model": state, "epoch": 300},
        "state_dict_backbone": {"state_dict": {**{f"backbone.{k}": v for k, v in state.items()},
                                               "neck.lateral_convs.0.conv.weight": torch.zeros(1)}},
        "timm": official_to_timm(state, "m0_9"),
        "module_prefix": {"model": {f"module.{k}": v for k, v in state.items()}},
    }[container]
    path = tmp_path / "weights.pth"
    torch.save(payload, path)
    if container == "state_dict_backbone":  # mm checkpoints hold no head: load into a backbone
        model = build_repvit("m0_9", num_classes=0, pretrained=str(path))
        assert all(torch.equal(model.state_dict()[k], state[k]) for k in model.state_dict())
    else:
        _assert_same_weights(build_repvit("m0_9", distillation=True, pretrained=str(path)), reference)


def test_backbone_ignores_classifier_heads(tmp_path, reference):
    path = tmp_path / "cls.pth"
    torch.save({"model": reference.state_dict()}, path)
    model = build_repvit("m0_9", num_classes=0, pretrained=str(path))
    assert model.classifier is None


def test_missing_and_unexpected_keys_are_named(tmp_path, reference):
    state = dict(reference.state_dict())
    state.pop("features.3.channel_mixer.m.0.c.weight")
    state["features.99.extra"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:
        build_repvit("m0_9", distillation=True, pretrained=str(path))
    assert "features.3.channel_mixer.m.0.c.weight" in str(err.value)
    assert "features.99.extra" in str(err.value)


def test_wrong_arch_reports_shape_mismatch(tmp_path, reference):
    path = tmp_path / "m0_9.pth"
    torch.save(reference.state_dict(), path)
    with pytest.raises(CheckpointError, match="shape mismatches|missing keys"):
        build_repvit("m1_1", distillation=True, pretrained=str(path))


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": _Evil(marker)}, path)
    with pytest.raises(CheckpointError, match="arbitrary code"):
        load_checkpoint_file(path)
    assert not marker.exists()


def test_corrupt_file_is_a_clear_error(tmp_path):
    path = tmp_path / "truncated.pth"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint_file(path)


def test_unknown_name_lists_the_zoo():
    with pytest.raises(CheckpointError, match="repvit_sam"):
        resolve_checkpoint("no_such_model")


def test_zoo_names_every_official_file():
    expected = {"repvit_m0_6_distill_300e", "repvit_sam", "repvit_m1_1_coco", "repvit_m2_3_ade20k"}
    expected |= {f"repvit_{a}_distill_{e}" for a in ("m0_9", "m1_0", "m1_1", "m1_5", "m2_3") for e in ("300e", "450e")}
    expected |= {f"repvit_{a}_distill_300" for a in ("m1", "m2", "m3")}  # the first version's files
    expected |= {"repvit_m2_coco", "repvit_m3_coco", "repvit_m2_ade20k", "repvit_m3_ade20k"}
    assert expected <= set(ZOO)
    assert all(ZOO[f"repvit_{a}_distill_300"].arch == a for a in ("m1", "m2", "m3"))


@pytest.fixture
def file_server(tmp_path):
    """Serve tmp_path/served on 127.0.0.1 (never the network)."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_verifies_hash_and_caches(file_server, reference):
    root, base = file_server
    torch.save({"model": reference.state_dict()}, root / "tiny.pth")
    digest = hashlib.sha256((root / "tiny.pth").read_bytes()).hexdigest()
    entry = ZooEntry("tiny.pth", f"{base}/tiny.pth", "classification", "m0_9", sha256=digest)
    path = download(entry, progress=False)
    assert path == cache_dir() / "tiny.pth"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    _assert_same_weights(build_repvit("m0_9", distillation=True, pretrained=str(path)), reference)
    (root / "tiny.pth").unlink()  # cached now: no second request
    assert download(entry, progress=False) == path


def test_download_with_bad_hash_leaves_nothing(file_server):
    root, base = file_server
    (root / "blob.pth").write_bytes(b"x" * 5000)
    entry = ZooEntry("blob.pth", f"{base}/blob.pth", "classification", sha256="0" * 64)
    with pytest.raises(CheckpointError, match="does not match"):
        download(entry, progress=False)
    assert list(cache_dir().iterdir()) == []


def test_offline_download_says_where_to_put_the_file(file_server):
    _, base = file_server
    entry = ZooEntry("absent.pth", f"{base}/absent.pth", "classification")
    with pytest.raises(CheckpointError) as err:
        download(entry, progress=False)
    message = str(err.value)
    assert entry.url in message and str(cache_dir() / "absent.pth") in message
    assert list(cache_dir().iterdir()) == []


def test_zoo_name_resolves_from_cache(tmp_path, reference):
    target = cache_dir() / "repvit_m0_9_distill_300e.pth"
    target.parent.mkdir(parents=True)
    torch.save({"model": reference.state_dict()}, target)
    model = build_repvit("m0_9", distillation=True, pretrained="repvit_m0_9_distill_300e")
    _assert_same_weights(model, reference)


def test_offline_mode_names_the_file_and_folder():
    with pytest.raises(CheckpointError) as err:
        resolve_checkpoint("repvit_sam")
    message = str(err.value)
    assert "REPVIT_PLUGINS_OFFLINE" in message and ZOO["repvit_sam"].url in message
    assert str(cache_dir() / "repvit_sam.pt") in message
