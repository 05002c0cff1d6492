"""Shared fixtures: deterministic seeds, realistic BatchNorm statistics, offline guards."""
from __future__ import annotations

import os
import sys
import uuid

os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the subprocesses tests start (DDP, CLI)
import pytest  # noqa: E402
import torch  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ["REPVIT_PLUGINS_OFFLINE"] = "1"  # zoo downloads fail fast with instructions; tests that download use loopback ZooEntry objects
# One thread: the tests run tiny models, several processes at a time (DDP, CLI subprocesses); with two
# OpenMP threads on a 2-core machine they wait on each other and run 5-50x slower.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _fresh_mm_logger():
    """mmengine keeps the last Runner's logger current, its file handler closed; give each test a new one."""
    if "mmengine" in sys.modules:
        from mmengine.logging import MMLogger

        MMLogger.get_instance(f"repvit-plugins-test-{uuid.uuid4().hex}")
    yield


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Every test gets its own model cache, so nothing leaks from ~/.cache."""
    monkeypatch.setenv("REPVIT_PLUGINS_HOME", str(tmp_path / "cache"))


def randomize_batchnorm(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every BatchNorm trained-looking statistics and affine parameters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) * 0.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) * 0.5 + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
    return model
