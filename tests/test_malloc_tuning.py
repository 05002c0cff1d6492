"""glibc allocator tuning applied by the entry points (repvit_plugins.runtime.malloc_tuning)."""
import pytest


class _FakeLibc:
    def __init__(self):
        self.calls = []
        self.mallopt = self

    def __call__(self, param, value):
        self.calls.append((param, value))
        return 1


@pytest.fixture
def malloc_tuning(monkeypatch):
    from repvit_plugins.runtime import malloc_tuning

    monkeypatch.setattr(malloc_tuning, "_state", {})
    for name in malloc_tuning.ENV_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(malloc_tuning.OPT_OUT_ENV, raising=False)
    return malloc_tuning


def test_tune_allocator_sets_mallopt_once(malloc_tuning, monkeypatch):
    libc = _FakeLibc()
    monkeypatch.setattr(malloc_tuning, "_glibc", lambda: libc)
    assert not malloc_tuning.allocator_tuned()
    assert malloc_tuning.tune_allocator() and malloc_tuning.tune_allocator() and malloc_tuning.allocator_tuned()
    assert libc.calls == [(-4, 0), (-1, 2**31 - 1)]  # M_MMAP_MAX = 0, M_TRIM_THRESHOLD = INT_MAX, once


def test_tune_allocator_opt_out(malloc_tuning, monkeypatch):
    libc = _FakeLibc()
    monkeypatch.setattr(malloc_tuning, "_glibc", lambda: libc)
    monkeypatch.setenv(malloc_tuning.OPT_OUT_ENV, "1")
    assert not malloc_tuning.tune_allocator() and libc.calls == []
    assert malloc_tuning.tune_allocator(force=True) and len(libc.calls) == 2


def test_tune_allocator_is_a_no_op_off_glibc(malloc_tuning, monkeypatch):
    monkeypatch.setattr(malloc_tuning.sys, "platform", "darwin")
    assert malloc_tuning._glibc() is None and not malloc_tuning.tune_allocator() and not malloc_tuning.allocator_tuned()


def test_tune_allocator_on_this_glibc(malloc_tuning):
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not a glibc system")
    assert malloc_tuning._glibc() is not None and malloc_tuning.tune_allocator() and malloc_tuning.allocator_tuned()
