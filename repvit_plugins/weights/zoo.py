"""Model zoo, download cache and downloads: every weight file the project uses is named here.

Nothing else in the project downloads. Files land in ``$REPVIT_PLUGINS_HOME``
(default ``~/.cache/repvit_plugins``). This module never imports a model.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..runtime.switches import env_switch
from .checkpoint_io import CheckpointError

__all__ = ["RELEASE", "ZooEntry", "ZOO", "cache_dir", "download", "downloads_disabled", "resolve_checkpoint",
           "zoo_entry"]

RELEASE = "https://github.com/THU-MIG/RepViT/releases/download/v1.0"
# the first version's files (M1/M2/M3) sit in the untagged releases its READMEs link to
RELEASE_V1 = "https://github.com/jameslahm/RepViT/releases/download/untagged-75eb9e1fea235b938f50"
RELEASE_V1_M3_COCO = "https://github.com/jameslahm/RepViT/releases/download/untagged-17a1aad5598a25485a4e"


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
    m0_6 = "repvit_m0_6_distill_300e.pth"
    entries = [ZooEntry(m0_6, f"{RELEASE}/{m0_6}", "classification", "m0_6")]
    for arch in ("m0_9", "m1_0", "m1_1", "m1_5", "m2_3"):
        for epochs in ("300e", "450e"):
            fname = f"repvit_{arch}_distill_{epochs}.pth"
            entries.append(ZooEntry(fname, f"{RELEASE}/{fname}", "classification", arch))
    for arch in ("m1_1", "m1_5", "m2_3"):
        entries.append(ZooEntry(f"repvit_{arch}_coco.pth", f"{RELEASE}/repvit_{arch}_coco.pth", "mmdet", arch))
        entries.append(ZooEntry(f"repvit_{arch}_ade20k.pth", f"{RELEASE}/repvit_{arch}_ade20k.pth", "mmseg", arch))
    # the paper's first version (RepViT-M1/M2/M3), as linked from that version's READMEs
    for arch in ("m1", "m2", "m3"):
        entries.append(ZooEntry(f"repvit_{arch}_distill_300.pth", f"{RELEASE_V1}/repvit_{arch}_distill_300.pth",
                                "classification", arch))
    entries += [ZooEntry("repvit_m2_coco.pth", f"{RELEASE_V1}/repvit_m2_coco.pth", "mmdet", "m2"),
                ZooEntry("repvit_m3_coco.pth", f"{RELEASE_V1_M3_COCO}/repvit_m3_coco.pth", "mmdet", "m3"),
                ZooEntry("repvit_m2_ade20k.pth", f"{RELEASE_V1}/repvit_m2_ade20k.pth", "mmseg", "m2"),
                ZooEntry("repvit_m3_ade20k.pth", f"{RELEASE_V1}/repvit_m3_ade20k.pth", "mmseg", "m3")]
    entries += [
        ZooEntry("repvit_sam.pt", f"{RELEASE}/repvit_sam.pt", "repvit_sam", "m2_3"),
        ZooEntry("sam_vit_b_01ec64.pth", "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth", "sam"),
        ZooEntry("sam_vit_l_0b3195.pth", "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth", "sam"),
        ZooEntry("sam_vit_h_4b8939.pth", "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth", "sam"),
        ZooEntry("mobile_sam.pt", "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt", "sam"),
        *(ZooEntry(f"{name}.pth", f"https://huggingface.co/spaces/chongzhou/EdgeSAM/resolve/main/weights/{name}.pth",
                   "sam", "m1") for name in ("edge_sam", "edge_sam_3x")),
        *(ZooEntry(f"efficientvit_sam_{v}.pt",
                   f"https://huggingface.co/mit-han-lab/efficientvit-sam/resolve/main/efficientvit_sam_{v}.pt", "sam")
          for v in ("l0", "l1", "l2", "xl0", "xl1")),
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
    return bool(env_switch("REPVIT_PLUGINS_OFFLINE"))


def zoo_entry(spec: str | os.PathLike) -> ZooEntry | None:
    """The zoo entry a name (``'repvit_sam'``) or zoo file name (``'repvit_sam.pt'``) refers to, if any."""
    name = Path(str(spec)).stem if str(spec).endswith((".pth", ".pt")) else str(spec)
    return ZOO.get(name)


def resolve_checkpoint(spec: str | os.PathLike, *, allow_download: bool = True) -> Path:
    """A checkpoint path, or a zoo name (``'repvit_m1_1_distill_450e'``) looked up in the cache.

    A zoo file missing from the cache is downloaded unless ``allow_download`` is
    false or ``REPVIT_PLUGINS_OFFLINE=1``; then the error says where to put it.
    """
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    entry = zoo_entry(spec)
    if entry is not None:
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
