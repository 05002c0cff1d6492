"""Before anything loads: is every weight a command needs on disk, or can it be fetched now?

:func:`check_weights` looks at every file and hub model that :class:`~repvit_plugins.options.ModelOptions`
names, probes the download hosts of those that are missing (in parallel, seconds at most) and
raises one :class:`MissingWeightsError` that lists everything missing and where each file goes.
When the Hugging Face hub cannot be reached the process switches to its local cache, so no
library retries a dead network for minutes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..options import ModelOptions
from .checkpoint_io import CheckpointError
from .hub import cached_hub_model, hub_endpoint, hub_offline, looks_like_local_path, reachable_hosts, use_hub_offline
from .zoo import ZooEntry, cache_dir, downloads_disabled, resolve_checkpoint, zoo_entry

__all__ = ["MissingWeight", "MissingWeightsError", "Need", "check_weights", "needed_weights"]

BERT = "bert-base-uncased"


@dataclass(frozen=True)
class Need:
    """One weight a command needs: a local ``file`` / ``folder``, a ``zoo`` checkpoint or a ``hub`` model."""

    what: str
    kind: str
    spec: str
    flag: str


@dataclass(frozen=True)
class MissingWeight:
    need: Need
    problem: str
    fix: str

    def render(self) -> str:
        return f"  - {self.need.what}: {self.problem}\n" + "\n".join(f"      {line}" for line in self.fix.splitlines())


class MissingWeightsError(RuntimeError):
    """Weights a command needs are neither on disk nor downloadable now; the message lists them all."""

    def __init__(self, missing: list[MissingWeight]):
        self.missing = missing
        lines = [f"{len(missing)} model file(s) needed by this command are missing:"]
        lines += [m.render() for m in missing]
        lines.append("Then run the command again (`repvit-plugins download --list` shows every zoo file).")
        super().__init__("\n".join(lines))


def _checkpoint_need(what: str, spec: str, flag: str) -> Need:
    return Need(what, "zoo" if zoo_entry(spec) is not None else "file", spec, flag)


def _model_need(what: str, spec: str, flag: str) -> Need:
    local = Path(spec).expanduser().exists() or looks_like_local_path(spec)
    return Need(what, "folder" if local else "hub", spec, flag)


def needed_weights(models: ModelOptions, *, sam: bool = True) -> list[Need]:
    """Every file and hub model ``models`` needs, in the order they load (no SAM weights unless ``sam``)."""
    needs = []
    detector_model = models.resolved_detector_model
    if str(detector_model or "").endswith(".onnx"):
        needs.append(Need("student detector ONNX file", "file", str(detector_model), "--detector-model"))
    elif models.detector == "hf":
        from ..grounding.detector_zoo import resolve_detector_model

        needs.append(_model_need("detector model", resolve_detector_model(detector_model), "--detector-model"))
    else:
        if models.detector_model:
            needs.append(Need(f"{models.detector} detector config", "file", models.detector_model, "--detector-model"))
        if models.detector == "original" or models.detector_checkpoint:
            spec = models.detector_checkpoint or "groundingdino_swint_ogc"
            needs.append(_checkpoint_need("detector checkpoint", spec, "--detector-checkpoint"))
        from ..grounding.mmdet_closed_set import is_closed_set_config

        if models.detector == "original" or not is_closed_set_config(models.detector_model):
            needs.append(_model_need("BERT text encoder", models.text_encoder or BERT, "--text-encoder"))
    if not sam:  # the detector draws the masks (--masks detector)
        return needs
    from ..grounding.factory import sam_checkpoint_of

    needs.append(_checkpoint_need(f"SAM checkpoint ({models.resolved_sam_model})", sam_checkpoint_of(models),
                                  "--sam-checkpoint"))
    if models.sam_encoder_onnx:
        needs.append(Need("SAM encoder ONNX file", "file", models.sam_encoder_onnx, "--sam-encoder-onnx"))
    return needs


def _zoo_entry(need: Need) -> ZooEntry:
    """The zoo entry of a ``'zoo'`` need (:func:`_checkpoint_need` gives that kind only to zoo names)."""
    entry = zoo_entry(need.spec)
    if entry is None:
        raise ValueError(f"{need.spec!r} is not a model-zoo name")
    return entry


def _local_problem(need: Need) -> str | None:
    path = Path(need.spec).expanduser()
    if need.kind == "file" and not path.is_file():
        return f"no file at {path}"
    if need.kind == "folder" and not (path / "config.json").is_file():
        return f"no model folder at {path} (config.json missing)"
    return None


def _hub_fix(need: Need) -> str:
    return (f"on a machine with internet access: huggingface-cli download {need.spec} --local-dir DIR\n"
            f"copy DIR here and pass {need.flag} DIR (or copy the Hugging Face cache, ~/.cache/huggingface)")


def check_weights(models: ModelOptions, *, sam: bool = True) -> None:
    """Raise :class:`MissingWeightsError` listing everything ``models`` needs that is neither here nor fetchable.

    Downloads (zoo files) and hub models that are missing but reachable are left to load as usual.
    ``sam=False``: the run builds no SAM model (``--masks detector``), so its weights are not needed.
    """
    needs = needed_weights(models, sam=sam)
    missing: list[MissingWeight] = []
    to_fetch: dict[Need, str] = {}
    for need in needs:
        if need.kind in ("file", "folder"):
            problem = _local_problem(need)
            if problem:
                missing.append(MissingWeight(need, problem, f"pass the right path with {need.flag}"))
        elif need.kind == "zoo":
            try:
                resolve_checkpoint(need.spec, allow_download=False)
            except CheckpointError:
                to_fetch[need] = _zoo_entry(need).url
        elif cached_hub_model(need.spec) is None:
            to_fetch[need] = hub_endpoint()
    hub_needed = any(need.kind == "hub" for need in needs)
    offline = {"zoo": downloads_disabled(), "hub": hub_offline()}
    probed = reachable_hosts([url for need, url in to_fetch.items() if not offline[need.kind]]
                             + ([hub_endpoint()] if hub_needed and not offline["hub"] else []))
    if hub_needed and not probed.get(hub_endpoint(), False):
        use_hub_offline()  # cached hub models load without asking the network
    for need, url in to_fetch.items():
        if not offline[need.kind] and probed.get(url):
            continue
        why = "offline mode is set" if offline[need.kind] else f"{url.split('/')[2]} cannot be reached"
        if need.kind == "zoo":
            entry = _zoo_entry(need)
            fix = (f"download {entry.url}\nand put it at {cache_dir() / entry.filename}\n"
                   f"(or pass its path with {need.flag})")
            missing.append(MissingWeight(need, f"{entry.filename} is not in the cache and {why}", fix))
        else:
            missing.append(MissingWeight(need, f"{need.spec} is not in the Hugging Face cache and {why}",
                                         _hub_fix(need)))
    if missing:
        raise MissingWeightsError(sorted(missing, key=lambda m: needs.index(m.need)))
