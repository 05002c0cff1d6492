"""Model zoo, download cache and safe checkpoint loading.

Every weight file the project uses is named here, with its URL and expected
layout; nothing else in the project downloads. Files land in
``$REPVIT_PLUGINS_HOME`` (default ``~/.cache/repvit_plugins``). Checkpoints are
always read with ``torch.load(weights_only=True)``: no code from a file runs.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import re
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

__all__ = [
    "CheckpointError",
    "ZooEntry",
    "ZOO",
    "cache_dir",
    "download",
    "resolve_checkpoint",
    "load_checkpoint_file",
    "extract_state_dict",
    "official_to_timm",
    "timm_to_official",
    "load_repvit_weights",
    "strict_load",
]

RELEASE = "https://github.com/THU-MIG/RepViT/releases/download/v1.0"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, unsafe or does not fit the model."""


@dataclass(frozen=True)
class ZooEntry:
    """One downloadable file: where it comes from and what it holds."""

    filename: str
    url: str
    layout: str  # 'classification' | 'repvit_sam' | 'mmdet' | 'mmseg' | 'sam' | 'groundingdino'
    arch: str | None = None
    sha256: str | None = None

    @property
    def name(self) -> str:
        return Path(self.filename).stem


def _zoo() -> dict[str, ZooEntry]:
    entries = [ZooEntry("repvit_m0_6_distill_300e.pth", f"{RELEASE}/repvit_m0_6_distill_300e.pth", "classification", "m0_6")]
    for arch in ("m0_9", "m1_0", "m1_1", "m1_5", "m2_3"):
        for epochs in ("300e", "450e"):
            fname = f"repvit_{arch}_distill_{epochs}.pth"
            entries.append(ZooEntry(fname, f"{RELEASE}/{fname}", "classification", arch))
    for arch in ("m1_1", "m1_5", "m2_3"):
        entries.append(ZooEntry(f"repvit_{arch}_coco.pth", f"{RELEASE}/repvit_{arch}_coco.pth", "mmdet", arch))
        entries.append(ZooEntry(f"repvit_{arch}_ade20k.pth", f"{RELEASE}/repvit_{arch}_ade20k.pth", "mmseg", arch))
    entries += [
        ZooEntry("repvit_sam.pt", f"{RELEASE}/repvit_sam.pt", "repvit_sam", "m2_3"),
        ZooEntry("sam_vit_b_01ec64.pth", "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth", "sam"),
        ZooEntry("sam_vit_l_0b3195.pth", "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth", "sam"),
        ZooEntry("sam_vit_h_4b8939.pth", "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth", "sam"),
        ZooEntry(
            "groundingdino_swint_ogc.pth",
            "https://github.com/IDEA-Research/GroundingDINO/releases/download/v0.1.0-alpha/groundingdino_swint_ogc.pth",
            "groundingdino",
        ),
    ]
    return {e.name: e for e in entries}


ZOO: dict[str, ZooEntry] = _zoo()


def cache_dir() -> Path:
    """Where downloads live: ``$REPVIT_PLUGINS_HOME`` or ``~/.cache/repvit_plugins``."""
    root = os.environ.get("REPVIT_PLUGINS_HOME") or Path.home() / ".cache" / "repvit_plugins"
    return Path(root).expanduser()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _missing_message(entry: ZooEntry, target: Path, reason: str) -> str:
    return (
        f"could not download {entry.filename} ({reason}).\n"
        f"Download it on a machine with internet access from\n  {entry.url}\n"
        f"and put it at\n  {target}\n"
        "(or set REPVIT_PLUGINS_HOME to the folder that holds it, or pass the file's path)."
    )


def download(entry: ZooEntry | str, *, progress: bool = True, force: bool = False, timeout: float = 60.0) -> Path:
    """Fetch a zoo file into the cache and return its path.

    The file is streamed into ``<name>.part`` next to the target, hashed on the
    way, and renamed into place only when complete and verified, so a partial
    file is never taken for a finished one.
    """
    entry = ZOO[entry] if isinstance(entry, str) else entry
    target = cache_dir() / entry.filename
    if target.is_file() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, part = tempfile.mkstemp(prefix=f"{entry.filename}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                response = urllib.request.urlopen(entry.url, timeout=timeout)  # noqa: S310 (zoo URLs only)
            except (urllib.error.URLError, OSError) as err:
                raise CheckpointError(_missing_message(entry, target, str(getattr(err, "reason", err)))) from err
            with response:
                total = int(response.headers.get("Content-Length") or 0) or None
                from tqdm.auto import tqdm

                with tqdm(total=total, unit="B", unit_scale=True, desc=entry.filename, disable=not progress) as bar:
                    for chunk in iter(lambda: response.read(1 << 20), b""):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
        if entry.sha256 and digest.hexdigest() != entry.sha256:
            raise CheckpointError(
                f"{entry.filename}: sha256 {digest.hexdigest()} does not match the expected {entry.sha256}; "
                "the download is corrupt or the file changed upstream. Nothing was saved; try again."
            )
        os.replace(part, target)
    finally:
        if os.path.exists(part):
            os.unlink(part)
    return target


def downloads_disabled() -> bool:
    """``REPVIT_PLUGINS_OFFLINE=1`` turns every download off (the tests set it)."""
    return os.environ.get("REPVIT_PLUGINS_OFFLINE", "").lower() in ("1", "true", "yes")


def resolve_checkpoint(spec: str | os.PathLike, *, allow_download: bool = True) -> Path:
    """A checkpoint path, or a zoo name (``'repvit_m1_1_distill_450e'``) looked up in the cache.

    A zoo file missing from the cache is downloaded unless ``allow_download`` is
    false or ``REPVIT_PLUGINS_OFFLINE=1``; then the error says where to put it.
    """
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    name = Path(str(spec)).stem if str(spec).endswith((".pth", ".pt")) else str(spec)
    if name in ZOO:
        entry = ZOO[name]
        cached = cache_dir() / entry.filename
        if cached.is_file():
            return cached
        if allow_download and not downloads_disabled():
            return download(entry)
        reason = "REPVIT_PLUGINS_OFFLINE is set" if downloads_disabled() else "downloads are disabled"
        raise CheckpointError(_missing_message(entry, cached, reason))
    raise CheckpointError(
        f"no checkpoint file at {path} and no model-zoo entry named {spec!r}. "
        f"Known names: {', '.join(sorted(ZOO))}."
    )


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


_WRAPPER_PREFIXES = ("module.", "backbone.", "image_encoder.", "model.")


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


def _layout_pairs(arch: str) -> list[tuple[str, str]]:
    """``(official_prefix, timm_prefix)`` pairs for ``arch``."""
    from .models.repvit import ARCHS

    spec = ARCHS[arch]
    pairs = [("features.0.0.", "stem.conv1."), ("features.0.2.", "stem.conv2.")]
    index = 1
    for stage, depth in enumerate(spec.depths):
        if stage > 0:
            ds = f"stages.{stage}.downsample."
            pairs += [
                (f"features.{index}.token_mixer.0.", ds + "spatial_downsample."),
                (f"features.{index}.token_mixer.2.", ds + "channel_downsample."),
                (f"features.{index}.channel_mixer.m.0.", ds + "ffn.conv1."),
                (f"features.{index}.channel_mixer.m.2.", ds + "ffn.conv2."),
            ]
            index += 1
        for j in range(depth):
            if stage < 3 and j == depth - 1:
                block = f"stages.{stage + 1}.downsample.pre_block."
            else:
                block = f"stages.{stage}.blocks.{j}."
            pairs += [
                (f"features.{index}.token_mixer.0.", block + "token_mixer."),
                (f"features.{index}.token_mixer.1.", block + "se."),
                (f"features.{index}.channel_mixer.m.0.", block + "channel_mixer.conv1."),
                (f"features.{index}.channel_mixer.m.2.", block + "channel_mixer.conv2."),
            ]
            index += 1
    pairs += [("classifier.classifier.", "head.head."), ("classifier.classifier_dist.", "head.head_dist.")]
    return pairs


def _rename(state: Mapping[str, torch.Tensor], pairs: list[tuple[str, str]]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for src, dst in pairs:
            if key.startswith(src):
                out[dst + key[len(src):]] = value
                break
        else:
            out[key] = value
    return out


def official_to_timm(state: Mapping[str, torch.Tensor], arch: str) -> dict[str, torch.Tensor]:
    """Rename an official RepViT state dict to timm's ``RepVit`` layout."""
    return _rename(state, _layout_pairs(arch))


def timm_to_official(state: Mapping[str, torch.Tensor], arch: str) -> dict[str, torch.Tensor]:
    """Rename a timm ``RepVit`` state dict to the official layout."""
    return _rename(state, [(dst, src) for src, dst in _layout_pairs(arch)])


def is_timm_layout(state: Mapping[str, torch.Tensor]) -> bool:
    return any(k.startswith(("stem.", "stages.")) for k in state)


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

        problems = [f"{label} ({len(keys)}): {show(keys)}" for label, keys in
                    (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)) if keys]
        raise CheckpointError(f"{what} does not fit {type(module).__name__}: " + "; ".join(problems))
    module.load_state_dict({k: v for k, v in state.items() if k in own}, strict=True)


def load_repvit_weights(model: nn.Module, spec: str | os.PathLike | Mapping[str, torch.Tensor], *,
                        prefix: str | None = None) -> nn.Module:
    """Load RepViT weights from a path, zoo name or state dict, in any accepted layout.

    Layouts: raw state dict, ``{'model': ...}``, ``{'state_dict': ...}`` (with
    ``backbone.`` prefixes), timm's ``RepVit``. Classifier heads in the file are
    ignored when the model has none (backbone use).
    """
    if isinstance(spec, Mapping) and all(torch.is_tensor(v) for v in spec.values()):
        state = dict(spec)
        what = "state dict"
    else:
        path = resolve_checkpoint(spec)
        state = extract_state_dict(load_checkpoint_file(path))
        what = str(path)
    if prefix is None:
        prefix = next((p for p in _WRAPPER_PREFIXES[1:] if any(k.startswith(p) for k in state)), "")
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if is_timm_layout(state):
        state = timm_to_official(state, model.arch_name)
    has_head = getattr(model, "classifier", None) is not None
    strict_load(model, state, ignore=None if has_head else r"classifier\.|neck\.", what=what)
    return model
