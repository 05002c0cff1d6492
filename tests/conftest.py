"""Shared fixtures: deterministic seeds, realistic BatchNorm statistics, offline guards."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the subprocesses tests start (DDP, CLI)
import pytest  # noqa: E402
import torch  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# zoo downloads fail fast with instructions; tests that download use loopback ZooEntry objects
os.environ["REPVIT_PLUGINS_OFFLINE"] = "1"
# One thread: the tests run tiny models, several processes at a time (DDP, CLI subprocesses); with two
# OpenMP threads on a 2-core machine they wait on each other and run 5-50x slower.
torch.set_num_threads(1)

TOOLS = Path(__file__).resolve().parents[1] / "tools"


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same torch, numpy and Python random states (mmdet initializes with all three)."""
    import random

    import numpy as np

    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)


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


def run_tool(name: str, *args, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run ``tools/<name>`` in a fresh interpreter, as a user does; stdout and stderr are captured as text."""
    return subprocess.run([sys.executable, str(TOOLS / name), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)
