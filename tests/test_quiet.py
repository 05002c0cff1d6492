"""quietly(): third-party chatter hidden inside the block, nothing changed after it, errors still raised."""
import logging
import warnings

import pytest

from repvit_plugins.runtime.quiet import quietly


def test_stdout_warnings_and_root_logger_are_hidden_then_restored(capsys, caplog):
    root = logging.getLogger()
    level = root.level
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with quietly(root_logger=True):
            print("hint from a library")
            warnings.warn("noise", UserWarning, stacklevel=2)
            logging.getLogger("some.library").warning("chatter")
            logging.getLogger("some.library").error("a real problem")
        warnings.warn("after", UserWarning, stacklevel=2)
    assert capsys.readouterr().out == ""
    assert [str(w.message) for w in seen] == ["after"]
    assert [r.getMessage() for r in caplog.records] == ["a real problem"]
    assert root.level == level


def test_stdout_can_stay_and_errors_propagate(capsys):
    level = logging.getLogger().level
    with pytest.raises(ValueError, match="boom"), quietly(stdout=False, root_logger=True):
        print("visible")
        raise ValueError("boom")
    assert capsys.readouterr().out == "visible\n"
    assert logging.getLogger().level == level
