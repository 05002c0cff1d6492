"""Let ``torch.load(weights_only=True)`` read mmengine Runner checkpoints.

mmengine 0.10 calls ``torch.load`` without ``weights_only``; on torch >= 2.6 that
means ``weights_only=True``, which refuses the few non-tensor objects a Runner
checkpoint holds (the message hub's ``HistoryBuffer`` and numpy arrays/scalars).
Registering exactly those classes as safe globals makes ``--resume`` and
``load_from`` work while keeping the safe loader on for everything else. The
unsafe switch (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``) is never touched.
"""
from __future__ import annotations

import builtins

import numpy as np
import torch

__all__ = ["mmengine_safe_globals", "register_safe_globals"]


def _numpy_globals() -> list:
    core = getattr(np, "_core", None) or np.core  # numpy 2 renamed np.core to np._core
    found = [np.ndarray, np.dtype, core.multiarray._reconstruct, core.multiarray.scalar]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:  # numpy >= 1.25 pickles dtypes by their class (np.dtypes.Float64DType)
        found += [getattr(dtypes, name) for name in dtypes.__all__ if isinstance(getattr(dtypes, name), type)]
    return found


def mmengine_safe_globals() -> list:
    """The globals an mmengine checkpoint needs beyond tensors and plain containers."""
    found = _numpy_globals()
    # HistoryBuffer pickles its statistics methods as getattr(HistoryBuffer, 'min'); getattr's result can
    # never be called by the safe unpickler (only allow-listed callables can), so listing it is harmless.
    found.append(builtins.getattr)
    try:
        from mmengine.logging.history_buffer import HistoryBuffer
    except ImportError:  # mmengine missing: nothing of it can be in a checkpoint we read
        pass
    else:
        found.append(HistoryBuffer)
    return found


def register_safe_globals() -> list:
    """Register :func:`mmengine_safe_globals` with torch (idempotent); return them."""
    found = mmengine_safe_globals()
    add = getattr(torch.serialization, "add_safe_globals", None)
    if add is not None:  # torch < 2.4 loads these files without an allow-list anyway
        known = set(map(id, torch.serialization.get_safe_globals()))
        add([g for g in found if id(g) not in known])
    return found
