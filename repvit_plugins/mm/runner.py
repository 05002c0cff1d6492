"""What ``tools/train.py`` and ``tools/test.py`` share: config in, mmengine Runner out.

Nothing here is specific to mmdet or mmseg: the config's ``default_scope``
decides which registries the Runner builds from (``mmdet``, ``mmseg``,
``mmengine`` or a project's own scope), and the few scope-specific details
(the results dumper, where the visualisation hook saves images) come from a
small table with a generic fallback.
"""
from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log
from mmengine.runner import Runner

from ..runtime.worker_exit import end_worker_process
from . import register_safe_globals

__all__ = ["parse_with_launcher", "load_config", "prepare_train", "prepare_test", "build_runner",
           "finish_distributed_worker"]

# what differs between scopes; any other scope gets _GENERIC
_GENERIC: dict[str, Any] = dict(dumper="DumpResults", show_dir_key=None, show_hook={})
_SCOPE_TRAITS: dict[str, dict[str, Any]] = {
    "mmdet": dict(dumper="DumpDetResults", show_dir_key="test_out_dir", show_hook={}),
    "mmseg": dict(dumper="DumpResults", show_dir_key=None, show_hook=dict(interval=1)),  # default: every 50th
}


def parse_with_launcher(parser: argparse.ArgumentParser, argv: list[str] | None,
                        dist_script: str) -> argparse.Namespace:
    """Add ``--launcher`` / ``--local-rank`` (set by ``dist_script``), parse ``argv`` and export ``LOCAL_RANK``."""
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none",
                        help=f"job launcher; {dist_script} passes 'pytorch' (torchrun)")
    parser.add_argument("--local-rank", "--local_rank", type=int, default=0,
                        help="set by old-style launchers; torchrun uses the LOCAL_RANK variable instead")
    args = parser.parse_args(argv)
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    return args


def load_config(config: str | os.PathLike, *, work_dir: str | None = None, cfg_options: dict | None = None,
                launcher: str = "none") -> Config:
    """Read ``config``, apply ``--cfg-options`` and set the work dir (default ``work_dirs/<config name>``)."""
    register_safe_globals()
    cfg = Config.fromfile(str(config))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = str(work_dir)
    elif cfg.get("work_dir") is None:
        cfg.work_dir = str(Path("work_dirs") / Path(config).stem)
    return cfg


def prepare_train(cfg: Config, *, resume: str | None = None, amp: bool = False,
                  auto_scale_lr: bool | None = None) -> Config:
    """Apply the training flags: ``--resume [CKPT]``, ``--amp``, ``--auto-scale-lr``."""
    if amp:
        if not torch.cuda.is_available():
            raise SystemExit("--amp needs a CUDA GPU (mmengine's AmpOptimWrapper does not run on CPU); "
                             "drop --amp to train in float32.")
        wrapper = cfg.optim_wrapper
        if wrapper.get("type", "OptimWrapper") == "AmpOptimWrapper":
            print_log("the config already uses AmpOptimWrapper", logger="current", level=logging.WARNING)
        else:
            wrapper.type = "AmpOptimWrapper"
            wrapper.setdefault("loss_scale", "dynamic")
    if auto_scale_lr is not None:
        if "auto_scale_lr" not in cfg or "base_batch_size" not in cfg.auto_scale_lr:
            raise SystemExit("--auto-scale-lr needs auto_scale_lr = dict(base_batch_size=N) in the config: "
                             "the total batch size its learning rate was tuned for.")
        cfg.auto_scale_lr.enable = auto_scale_lr
    if resume == "auto":
        cfg.resume, cfg.load_from = True, None
    elif resume is not None:
        if not Path(resume).is_file():
            raise SystemExit(f"--resume {resume}: no such checkpoint; give a file written by a previous run "
                             "or use --resume alone to continue from the work dir's last checkpoint.")
        cfg.resume, cfg.load_from = True, resume
    return cfg


def prepare_test(cfg: Config, *, checkpoint: str, fuse: bool = False, out: str | None = None,
                 show_dir: str | None = None) -> Config:
    """Apply the test flags: the checkpoint, ``--fuse``, ``--out`` and ``--show-dir``."""
    if not Path(checkpoint).is_file():
        raise SystemExit(f"checkpoint {checkpoint} not found; pass the .pth file written by tools/train.py "
                         "(or converted by tools/convert_mm_checkpoint.py).")
    cfg.load_from, cfg.resume = checkpoint, False
    traits = _SCOPE_TRAITS.get(cfg.get("default_scope"), _GENERIC)
    if fuse:
        # EMAHook's test-time swap pairs the model's parameters with its unfused copy's, which no longer match the
        # fused model; the checkpoint's state_dict already holds the averaged weights (EMAHook saves them there)
        hooks = [h for h in cfg.get("custom_hooks", []) if str(h.get("type", "")).split(".")[-1] != "EMAHook"]
        cfg.custom_hooks = [*hooks, dict(type="ReparameterizeHook")]
    if out is not None:
        if not out.endswith((".pkl", ".pickle")):
            raise SystemExit(f"--out {out}: the results file must end in .pkl")
        evaluator = cfg.test_evaluator
        evaluators = list(evaluator) if isinstance(evaluator, (list, tuple)) else [evaluator]
        cfg.test_evaluator = [*evaluators, dict(type=traits["dumper"], out_file_path=out)]
    if show_dir is not None:
        hook = cfg.get("default_hooks", {}).get("visualization")
        if hook is None:
            raise SystemExit("--show-dir needs a visualization hook in default_hooks (this config has none).")
        show_dir = str(Path(show_dir).resolve())  # mmdet would put a relative one under the work dir
        hook.update(draw=True, **traits["show_hook"])
        if traits["show_dir_key"] is not None:
            hook[traits["show_dir_key"]] = show_dir
        else:  # the visualizer's backend saves under <show_dir>/vis_data/vis_image
            cfg.visualizer.save_dir = show_dir
    return cfg


def _cpu_distributed(cfg: Config) -> None:
    """Let ``torchrun`` work without GPUs: gloo process group, DDP without device ids.

    mmengine's launcher calls ``torch.cuda.set_device`` and passes
    ``device_ids=[LOCAL_RANK]`` to DDP, both of which fail on a CPU-only host.
    """
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")
    wrapper = cfg.get("model_wrapper_cfg") or ConfigDict(type="MMDistributedDataParallel",
                                                         broadcast_buffers=False)
    wrapper.setdefault("find_unused_parameters", cfg.get("find_unused_parameters", False))
    wrapper.device_ids = None
    cfg.model_wrapper_cfg = wrapper


def _fresh_visualizer(cfg: Config) -> None:
    """Give the visualizer a new name if one of that name exists in this process.

    mmengine keeps one visualizer per name and hands the old one (with the old
    run's save_dir) to a second Runner; that happens when the tools run twice in
    one process (notebooks, tests).
    """
    from mmengine.visualization import Visualizer

    visualizer = cfg.get("visualizer")
    if isinstance(visualizer, dict) and "name" in visualizer and Visualizer.check_instance_created(visualizer["name"]):
        visualizer["name"] = f"{visualizer['name']}_{time.monotonic_ns()}"


def build_runner(cfg: Config) -> Any:
    """An mmengine ``Runner`` (or the config's ``runner_type``) for ``cfg``."""
    if cfg.get("launcher") == "pytorch" and not torch.cuda.is_available():
        _cpu_distributed(cfg)
    _fresh_visualizer(cfg)
    if "runner_type" in cfg:
        from mmengine.registry import RUNNERS

        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def finish_distributed_worker() -> None:
    """End a worker process of a finished distributed run (``torchrun``); a no-op without a process group.

    :func:`~repvit_plugins.runtime.worker_exit.end_worker_process` with exit code 0: the process group destroyed,
    logs and standard streams flushed, no interpreter teardown (where gloo's threads abort the process).
    Call it only after success and only from a script's ``__main__`` (it ends the process).
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        end_worker_process(0)
