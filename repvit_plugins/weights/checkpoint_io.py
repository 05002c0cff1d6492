"""Safe checkpoint loading: ``torch.load(weights_only=True)``, state-dict extraction, strict key checks.

No code from a file ever runs: pickled objects beyond tensors and plain
containers are refused with a message that says how to re-save the file.
"""
from __future__ import annotations

import os
import pickle
import re
from typing import Any, Mapping

import torch
from torch import nn

__all__ = ["CheckpointError", "load_checkpoint_file", "extract_state_dict", "strict_load"]


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, unsafe or does not fit the model."""


def load_checkpoint_file(path: str | os.PathLike) -> Any:
    """``torch.load(path, weights_only=True)`` with errors that say what to do."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path} holds pickled Python objects beyond tensors and plain containers, so it was not loaded "
            "(loading it could run arbitrary code). If you trust the file, re-save only its state dict: "
            "torch.save(torch.load(path, weights_only=False)['model'], 'clean.pth'). Details: "
            f"{str(err).splitlines()[0]}"
        ) from err
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?): {err}") from err


def extract_state_dict(obj: Any, prefix: str | None = None) -> dict[str, torch.Tensor]:
    """The state dict inside a raw dict, ``{'model': ...}`` or ``{'state_dict': ...}``.

    With ``prefix`` (e.g. ``'backbone.'``), only keys under it are kept, with the
    prefix removed. Otherwise ``module.`` (DDP) is stripped.
    """
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "model_ema"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(torch.is_tensor(v) for v in obj.values()):
        raise CheckpointError("checkpoint holds no state dict (expected tensors, 'model' or 'state_dict')")
    state = {k.removeprefix("module."): v for k, v in obj.items()}
    if prefix is not None:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return state


def strict_load(module: nn.Module, state: Mapping[str, torch.Tensor], *, ignore: str | None = None,
                what: str = "checkpoint") -> None:
    """``load_state_dict`` that raises a :class:`CheckpointError` naming missing/unexpected/mismatched keys.

    ``ignore`` is a regex of key names allowed to be unexpected (e.g. classifier heads).
    """
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(k for k in set(state) - set(own) if not (ignore and re.match(ignore, k)))
    mismatched = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state) if state[k].shape != own[k].shape
    )
    if missing or unexpected or mismatched:
        def show(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f" ... (+{len(keys) - 8} more)" if len(keys) > 8 else "")

        found = (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched))
        problems = [f"{label} ({len(keys)}): {show(keys)}" for label, keys in found if keys]
        raise CheckpointError(f"{what} does not fit {type(module).__name__}: " + "; ".join(problems))
    module.load_state_dict({k: v for k, v in state.items() if k in own}, strict=True)
