"""The open-vocabulary detector zoo as data: one :class:`DetectorSpec` per named detector.

An entry says which implementation runs it (a transformers *family*, groundingdino-py or mmdet), where its
weights come from, the input size it was trained at, its text encoder, licence and the zero-shot AP its
authors published. ``--detector-model`` takes an entry's name, a hub id or a local ``save_pretrained``
folder; for transformers models the family is read from the folder's ``config.json`` (``model_type``),
so any checkpoint of a supported family works without an entry. The pipeline never knows which detector
it has: every family is a :class:`~repvit_plugins.grounding.detector.GroundingDetector`.
This module imports nothing heavy.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..options import REALTIME_DETECTOR

__all__ = ["DETECTORS", "HF_FAMILIES", "REALTIME_DETECTOR", "DetectorSpec", "detector_spec", "detector_table",
           "hf_config_path", "hf_family", "resolve_detector_model"]

HF_FAMILIES = {
    "grounding-dino": "Grounding DINO (GroundingDinoForObjectDetection)",
    "mm-grounding-dino": "MM-Grounding-DINO / LLMDet (MMGroundingDinoForObjectDetection)",
    "omdet-turbo": "OmDet-Turbo (OmDetTurboForObjectDetection)",
    "owlv2": "OWLv2 (Owlv2ForObjectDetection)",
}
"""transformers ``model_type`` -> what runs it; the keys are the families the ``hf`` backend loads."""


@dataclass(frozen=True)
class DetectorSpec:
    """One named open-vocabulary detector.

    Attributes:
        name: zoo name (``--detector-model NAME``).
        backend: ``--detector``: ``'hf'`` (transformers), ``'original'`` (groundingdino-py) or ``'mmdet'``.
        family: a :data:`HF_FAMILIES` key for ``hf`` entries, else the backend's model.
        source: hub id (``hf``), zoo checkpoint (``original``) or ``None`` (``mmdet``: pass a config).
        input_size: the resize the model was trained at, as its processor applies it.
        text_encoder: what encodes the prompt.
        licence: the weights' licence.
        coco_ap / lvis_ap: published zero-shot COCO val AP / LVIS minival AP, ``None`` where not published
            or not checked.
        ap_source: where the APs are published.
    """

    name: str
    backend: str
    family: str
    source: str | None
    input_size: str
    text_encoder: str
    licence: str
    coco_ap: float | None = None
    lvis_ap: float | None = None
    ap_source: str = ""


_GDINO_PAPER = "Grounding DINO paper (arXiv 2303.05499), Table 2"
_MM_GDINO = "MM-Grounding-DINO paper (arXiv 2401.02361) / transformers model doc"

DETECTORS: dict[str, DetectorSpec] = {spec.name: spec for spec in (
    DetectorSpec("grounding_dino_tiny", "hf", "grounding-dino", "IDEA-Research/grounding-dino-tiny",
                 "shortest edge 800, longest 1333", "BERT-base", "Apache-2.0", 48.4, None, _GDINO_PAPER),
    DetectorSpec("grounding_dino_base", "hf", "grounding-dino", "IDEA-Research/grounding-dino-base",
                 "shortest edge 800, longest 1333", "BERT-base", "Apache-2.0", None, None,
                 "trained with COCO: no zero-shot COCO AP"),
    DetectorSpec("mm_grounding_dino_tiny", "hf", "mm-grounding-dino",
                 "openmmlab-community/mm_grounding_dino_tiny_o365v1_goldg_v3det",
                 "shortest edge 800, longest 1333", "BERT-base", "Apache-2.0", 50.6, 41.4, _MM_GDINO),
    DetectorSpec("llmdet_tiny", "hf", "mm-grounding-dino", "iSEE-Laboratory/llmdet_tiny",
                 "shortest edge 800, longest 1333", "BERT-base", "Apache-2.0", None, 44.7,
                 "LLMDet paper (arXiv 2501.18954), Table 1"),
    DetectorSpec("llmdet_base", "hf", "mm-grounding-dino", "iSEE-Laboratory/llmdet_base",
                 "shortest edge 800, longest 1333", "BERT-base", "Apache-2.0", None, 48.3,
                 "LLMDet README model zoo (github.com/iSEE-Laboratory/LLMDet)"),
    DetectorSpec("omdet_turbo_tiny", "hf", "omdet-turbo", "omlab/omdet-turbo-swin-tiny-hf",
                 "640x640", "CLIP ViT-B/16 text (cached per prompt)", "Apache-2.0", 42.5, 30.3,
                 "OmDet-Turbo paper (arXiv 2403.06892), Table 1"),
    DetectorSpec("owlv2_base", "hf", "owlv2", "google/owlv2-base-patch16-ensemble",
                 "960x960 (padded square)", "CLIP B/16 text (cached per prompt)", "Apache-2.0", None, None,
                 "no minival AP published; LVIS v1 val AP 43.9 (ST/FT ensemble, scenic owl_vit README)"),
    DetectorSpec("groundingdino_swint_ogc", "original", "groundingdino-py", "groundingdino_swint_ogc",
                 "shortest edge 800, longest 1333", "BERT-base", "Apache-2.0", 48.4, None, _GDINO_PAPER),
    DetectorSpec("mmdet_grounding_dino", "mmdet", "mmdet GroundingDINO", None,
                 "from its config", "BERT-base", "Apache-2.0 (mmdet)", None, None,
                 "depends on the config and checkpoint you pass"),
)}

DEFAULT_DETECTOR = "grounding_dino_tiny"


def detector_spec(name: str) -> DetectorSpec | None:
    """The zoo entry called ``name``, or ``None``."""
    return DETECTORS.get(name)


def resolve_detector_model(model: str | None) -> str:
    """What an ``hf`` detector loads: an entry's hub id for a zoo name, else ``model`` (default: Grounding DINO-T)."""
    spec = DETECTORS.get(model or DEFAULT_DETECTOR)
    if spec is not None and spec.backend == "hf":
        return str(spec.source)
    if spec is not None:
        raise ValueError(f"{spec.name} runs on --detector {spec.backend}, not on the transformers backend: "
                         f"pass --detector {spec.backend}")
    return str(model)


def hf_config_path(source: str) -> Path | None:
    """``config.json`` of a local folder or of a hub model in the Hugging Face cache, if there is one."""
    folder = Path(source).expanduser()
    if (folder / "config.json").is_file():
        return folder / "config.json"
    if folder.exists():
        return None
    from ..weights.hub import cached_hub_model  # imports huggingface_hub

    cached = cached_hub_model(source) if source.count("/") == 1 else None
    return cached / "config.json" if cached is not None else None


def hf_family(model: str | None) -> str | None:
    """The transformers family (``model_type``) of ``model`` (a zoo name, hub id or local folder), read without the
    network: from ``config.json`` in the folder or the Hugging Face cache, else from the zoo entry with that hub id;
    ``None`` when neither knows (a hub model not downloaded yet: its loader fetches the config).

    Raises:
        ValueError: a ``config.json`` of a family the ``hf`` backend does not load.
    """
    source = resolve_detector_model(model)
    config = hf_config_path(source)
    if config is not None:
        try:
            model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
        except (OSError, ValueError) as err:
            raise ValueError(f"could not read {config}: {err}") from err
        if model_type not in HF_FAMILIES:
            raise ValueError(f"{model}: config.json says model_type {model_type!r}; the transformers backend loads "
                             f"{', '.join(HF_FAMILIES)}")
        return str(model_type)
    by_hub_id = {spec.source: spec.family for spec in DETECTORS.values() if spec.backend == "hf"}
    return by_hub_id.get(source)


def detector_table() -> str:
    """The zoo as a Markdown table (README / ``repvit-plugins info``)."""
    def ap(value: float | None) -> str:
        return "–" if value is None else f"{value:.1f}"

    rows = ["| name | backend | family | weights | input | text encoder | licence | COCO AP | LVIS minival AP |",
            "|---|---|---|---|---|---|---|---|---|"]
    rows += [f"| `{s.name}` | {s.backend} | {s.family} | {s.source or 'your config'} | {s.input_size} | "
             f"{s.text_encoder} | {s.licence} | {ap(s.coco_ap)} | {ap(s.lvis_ap)} |" for s in DETECTORS.values()]
    return "\n".join(rows)
