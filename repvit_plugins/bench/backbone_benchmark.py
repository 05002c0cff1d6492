"""RepViT against the efficient backbones its paper compares with, measured side by side in one run.

For every contender: parameters and MACs of the ImageNet classifier at 224x224 (RepViT fused; the others
after ``timm.utils.reparameterize_model``, which fuses what timm can fuse), MACs of the backbone alone at a
detection input, CPU latency (eager PyTorch, and onnxruntime where the model exports), and the ImageNet-1k
top-1 its paper publishes. Weights are random: none of this depends on them.
"""
from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from ..runtime.quiet import quietly
from .complexity import count_macs, count_params
from .timing import median_seconds

__all__ = ["CONTENDERS", "Contender", "Measurement", "contender", "latency_ms", "measure", "markdown_table",
           "plot_latency_top1"]


@dataclass(frozen=True)
class Contender:
    """One backbone: a RepViT arch or a timm model, with its published ImageNet-1k top-1."""

    name: str
    arch: str | None = None  # RepViT arch, or
    timm_name: str | None = None  # a timm model
    top1: float | None = None
    source: str = ""
    levels: int = 4  # feature levels the detection backbone taps (timm's out_indices)
    fixed_size_attention: bool = False  # EfficientFormer: built for the detection input size


_REPVIT = "Wang et al., CVPR 2024 (300 epochs)"
_REPVIT_V1 = "Wang et al., arXiv v1 2023 (300 epochs)"
CONTENDERS: tuple[Contender, ...] = (
    Contender("RepViT-M0.6", arch="m0_6", top1=74.1, source=_REPVIT),
    Contender("RepViT-M0.9", arch="m0_9", top1=78.7, source=_REPVIT),
    Contender("RepViT-M1.0", arch="m1_0", top1=80.0, source=_REPVIT),
    Contender("RepViT-M1.1", arch="m1_1", top1=80.7, source=_REPVIT),
    Contender("RepViT-M1.5", arch="m1_5", top1=82.3, source=_REPVIT),
    Contender("RepViT-M2.3", arch="m2_3", top1=83.3, source=_REPVIT),
    Contender("RepViT-M1", arch="m1", top1=78.5, source=_REPVIT_V1),
    Contender("RepViT-M2", arch="m2", top1=80.6, source=_REPVIT_V1),
    Contender("RepViT-M3", arch="m3", top1=81.4, source=_REPVIT_V1),
    Contender("EfficientViT-M5", timm_name="efficientvit_m5", top1=77.1, source="Liu et al., CVPR 2023", levels=3),
    Contender("EfficientViT-B1", timm_name="efficientvit_b1", top1=79.4, source="Cai et al., ICCV 2023 (r224)"),
    Contender("EfficientFormer-L1", timm_name="efficientformer_l1", top1=79.2, source="Li et al., NeurIPS 2022",
              fixed_size_attention=True),
    Contender("EfficientFormerV2-S2", timm_name="efficientformerv2_s2", top1=82.0, source="Li et al., ICCV 2023",
              fixed_size_attention=True),
    Contender("MobileViTv2-1.0", timm_name="mobilevitv2_100", top1=78.1, source="Mehta & Rastegari, 2022 (256 px)"),
    Contender("EfficientNetV2-B3", timm_name="tf_efficientnetv2_b3", top1=82.1,
              source="Tan & Le, ICML 2021 (tested at 300 px)"),
    Contender("TinyViT-11M", timm_name="tiny_vit_11m_224", top1=81.5, source="Wu et al., ECCV 2022 (ImageNet-1k)"),
)


def contender(spec: str) -> Contender:
    """A contender by name (``'RepViT-M1.1'``, ``'EfficientViT-B1'``) or any timm model as ``'timm:NAME'``."""
    if spec.startswith("timm:"):
        from ..models.timm_features import create_features, feature_levels

        with torch.device("meta"), quietly():  # how many feature levels it has, without building weights
            levels = len(feature_levels(create_features(spec[5:], 1)).info)
        return Contender(spec[5:], timm_name=spec[5:], levels=min(4, levels))
    for entry in CONTENDERS:
        names = (entry.name, entry.name.removeprefix("RepViT-"), entry.arch or "", entry.timm_name or "")
        if spec.lower() in {n.lower() for n in names}:
            return entry
    raise ValueError(f"unknown backbone {spec!r}; choose from {', '.join(c.name for c in CONTENDERS)} "
                     "or pass any timm model as timm:NAME")


@dataclass
class Measurement:
    name: str
    top1: float | None
    source: str
    params_m: float
    macs_g: float
    det_macs_g: float
    eager_ms: float
    onnx_ms: float | None
    onnx_note: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def latency_ms(run: Callable[[], object], warmup: int, iters: int) -> float:
    """Median wall time of ``run()`` in milliseconds, after ``warmup`` untimed calls."""
    return median_seconds(run, iters, warmup) * 1e3


def _classifier(entry: Contender) -> nn.Module:
    if entry.arch:
        from ..models import build_repvit, reparameterize

        return reparameterize(build_repvit(entry.arch, distillation=True).eval())
    import timm
    from timm.utils import reparameterize_model

    assert entry.timm_name is not None  # a contender is a RepViT arch or a timm model
    with quietly():
        model = timm.create_model(entry.timm_name, pretrained=False, num_classes=1000)  # TinyViT defaults to 22k
        return reparameterize_model(model.eval(), inplace=True)


def _detection_backbone(entry: Contender, det_size: Sequence[int]) -> nn.Module:
    if entry.arch:
        from ..models import build_repvit, reparameterize

        return reparameterize(build_repvit(entry.arch, num_classes=0).eval())
    from ..models.timm_features import create_features

    assert entry.timm_name is not None  # a contender is a RepViT arch or a timm model
    img_size = det_size if entry.fixed_size_attention else None
    with quietly():
        return create_features(entry.timm_name, entry.levels, img_size=img_size).eval()


def _onnx_latency(model: nn.Module, x: torch.Tensor, warmup: int, iters: int) -> tuple[float | None, str]:
    """onnxruntime latency of ``model`` exported with torch's dynamo exporter, or ``(None, why not)``."""
    from ..sam.onnx_export import _export
    from ..sam.ort_backend import create_session

    with tempfile.TemporaryDirectory() as folder:
        try:
            path = _export(model, (x,), Path(folder) / "model.onnx", ["input"], ["output"], None, None, False)
            session = create_session(path)
        except Exception as err:  # noqa: BLE001 (any exporter failure is a result, not a crash)
            return None, f"does not export: {type(err).__name__}: {str(err).splitlines()[0][:120]}"
        feed = {"input": x.numpy()}
        return latency_ms(lambda: session.run(None, feed), warmup, iters), ""


@torch.inference_mode()
def measure(entry: Contender, size: int = 224, det_size: Sequence[int] = (800, 1344), warmup: int = 5,
            iters: int = 20, onnx: bool = True) -> Measurement:
    """Every number for ``entry`` (random weights, batch 1, float32, the current torch thread count)."""
    model = _classifier(entry)
    x = torch.randn(1, 3, size, size)
    det = _detection_backbone(entry, tuple(det_size))
    det_macs = count_macs(det, (1, 3, *det_size))
    del det
    eager = latency_ms(lambda: model(x), warmup, iters)
    onnx_ms, note = _onnx_latency(model, x, warmup, iters) if onnx else (None, "not run")
    return Measurement(entry.name, entry.top1, entry.source, count_params(model) / 1e6,
                       count_macs(model, (1, 3, size, size)) / 1e9, det_macs / 1e9, eager, onnx_ms, note)


def markdown_table(rows: Sequence[Measurement], size: int, det_size: Sequence[int]) -> str:
    """The results as a Markdown table."""
    head = (f"| backbone | params | MACs @{size} | backbone MACs @{det_size[0]}x{det_size[1]} | CPU eager | "
            "CPU onnxruntime | ImageNet top-1 (published) |\n|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        onnx = f"{r.onnx_ms:.1f} ms" if r.onnx_ms is not None else "–"
        top1 = f"{r.top1:.1f} ({r.source})" if r.top1 is not None else "–"
        lines.append(f"| {r.name} | {r.params_m:.2f} M | {r.macs_g:.2f} G | {r.det_macs_g:.1f} G | {r.eager_ms:.1f} ms "
                     f"| {onnx} | {top1} |")
    return head + "\n".join(lines) + "\n"


def _family(name: str) -> str:
    """'RepViT' (M0.6-M2.3), 'RepViT v1' (M1, M2, M3: no decimal point) or the backbone itself."""
    if not name.startswith("RepViT-"):
        return name
    return "RepViT" if "." in name else "RepViT v1 (M1-M3)"


def plot_latency_top1(rows: Sequence[Measurement], path: str | Path, title: str) -> Path:
    """Latency (eager CPU) against published top-1, one colour per family, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    points = [r for r in rows if r.top1 is not None]
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    families: dict[str, list[Measurement]] = {}
    for r in points:
        families.setdefault(_family(r.name), []).append(r)
    for family, members in families.items():
        members = sorted(members, key=lambda r: r.eager_ms)
        style = (dict(marker="o", linewidth=2) if family == "RepViT" else
                 dict(marker="o", linestyle="--") if family.startswith("RepViT") else
                 dict(marker="s", linestyle="none"))
        top1 = [r.top1 for r in members if r.top1 is not None]  # all of them: points have a top-1
        ax.plot([r.eager_ms for r in members], top1, label=family, **style)
        for r in members:
            ax.annotate(r.name.removeprefix("RepViT-"), (r.eager_ms, r.top1), textcoords="offset points",
                        xytext=(4, 4), fontsize=8)
    ax.set_xlabel("CPU latency, batch 1, 224x224 (ms, eager PyTorch)")
    ax.set_ylabel("ImageNet-1k top-1 (%, as published)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
