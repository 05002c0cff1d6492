"""Load a trained detector or segmentor and draw its prediction on an image.

``default_scope`` of the config picks the API: ``mmdet`` (boxes, masks, labels
drawn by mmdet's visualizer) or ``mmseg`` (class map blended over the image).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from mmengine.config import Config
from mmengine.model import BaseModel, revert_sync_batchnorm

from ..models.repvit import reparameterize
from . import register_safe_globals

__all__ = ["UnsupportedScopeError", "load_model", "draw_prediction"]

SUPPORTED_SCOPES = ("mmdet", "mmseg")


class UnsupportedScopeError(ValueError):
    """The config's ``default_scope`` is neither mmdet nor mmseg."""


def load_model(config: str | os.PathLike, checkpoint: str | os.PathLike, *, device: str = "cpu",
               fuse: bool = False) -> BaseModel:
    """Build the config's model, load ``checkpoint`` (weights_only, every key must fit), optionally re-parameterize.

    Raises :class:`UnsupportedScopeError` for a config of another ``default_scope`` and
    :class:`~repvit_plugins.weights.checkpoint_io.CheckpointError` naming the keys of a checkpoint that does not fit
    the config's model (mmengine alone would only warn and leave those weights random).
    """
    from ..weights.checkpoint_io import CheckpointError, extract_state_dict, load_checkpoint_file, strict_load

    register_safe_globals()
    cfg = Config.fromfile(str(config))
    scope = cfg.get("default_scope")
    if scope not in SUPPORTED_SCOPES:
        raise UnsupportedScopeError(f"{config}: default_scope is {scope!r}; the image demo runs mmdet or mmseg "
                                    f"configs ({', '.join(SUPPORTED_SCOPES)}).")
    state = extract_state_dict(load_checkpoint_file(checkpoint))  # unreadable or unsafe files fail before building
    if scope == "mmdet":
        from mmdet.apis import init_detector

        model = init_detector(cfg, str(checkpoint), device=device)
    else:
        from mmseg.apis import init_model

        model = init_model(cfg, str(checkpoint), device=device)
    try:
        strict_load(model, state, what=f"checkpoint {checkpoint}")
    except CheckpointError as err:
        raise CheckpointError(f"{err}. Pass the weights this config was trained into (tools/train.py writes them "
                              f"to its work dir, with a copy of the config) or the config they were trained with.") \
            from None
    model = revert_sync_batchnorm(model).eval()
    model.scope = scope
    return reparameterize(model) if fuse else model


def draw_prediction(model: BaseModel, image: str | Path, out_file: str | Path, *,
                    score_thr: float = 0.3, opacity: float = 0.5):
    """Run ``model`` on ``image``, save the visualisation to ``out_file``; return the prediction."""
    import mmcv

    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    if model.scope == "mmdet":
        from mmdet.apis import inference_detector
        from mmdet.registry import VISUALIZERS

        result = inference_detector(model, str(image))
        # a fresh, uniquely named visualizer: mmengine keeps one instance per name per process
        vis_cfg = dict(model.cfg.visualizer, name=f"repvit_demo_{time.monotonic_ns()}", save_dir=None)
        visualizer = VISUALIZERS.build(vis_cfg)
        visualizer.dataset_meta = model.dataset_meta
        visualizer.add_datasample("prediction", mmcv.imread(str(image), channel_order="rgb"), data_sample=result,
                                  draw_gt=False, show=False, pred_score_thr=score_thr, out_file=str(out_file))
    else:
        from mmseg.apis import inference_model, show_result_pyplot

        result = inference_model(model, str(image))
        show_result_pyplot(model, str(image), result, opacity=opacity, draw_gt=False, show=False,
                           out_file=str(out_file))
    return result
