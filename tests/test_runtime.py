"""glibc allocator tuning applied by the entry points (repvit_plugins.runtime)."""
import pytest


class _FakeLibc:
    def __init__(self):
        self.calls = []
        self.mallopt = self

    def __call__(self, param, value):
        self.calls.append((param, value))
        return 1


@pytest.fixture
def runtime(monkeypatch):
    from repvit_plugins import runtime

    monkeypatch.setattr(runtime, "_state", {})
    for name in runtime.ENV_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(runtime.OPT_OUT_ENV, raising=False)
    return runtime


def test_tune_allocator_sets_mallopt_once(runtime, monkeypatch):
    libc = _FakeLibc()
    monkeypatch.setattr(runtime, "_glibc", lambda: libc)
    assert not runtime.allocator_tuned()
    assert runtime.tune_allocator() and runtime.tune_allocator() and runtime.allocator_tuned()
    assert libc.calls == [(-4, 0), (-1, 2**31 - 1)]  # M_MMAP_MAX = 0, M_TRIM_THRESHOLD = INT_MAX, once


def test_tune_allocator_opt_out(runtime, monkeypatch):
    libc = _FakeLibc()
    monkeypatch.setattr(runtime, "_glibc", lambda: libc)
    monkeypatch.setenv(runtime.OPT_OUT_ENV, "1")
    assert not runtime.tune_allocator() and libc.calls == []
    assert runtime.tune_allocator(force=True) and len(libc.calls) == 2


def test_tune_allocator_is_a_no_op_off_glibc(runtime, monkeypatch):
    monkeypatch.setattr(runtime.sys, "platform", "darwin")
    assert runtime._glibc() is None and not runtime.tune_allocator() and not runtime.allocator_tuned()


def test_tune_allocator_on_this_glibc(runtime):
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not a glibc system")
    assert runtime._glibc() is not None and runtime.tune_allocator() and runtime.allocator_tuned()
