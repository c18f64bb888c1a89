"""Teacher runs: build the task a config asks for, train a teacher once, load it back.

Teachers are cached by their full config (architecture, data options, training
options): ``get_teacher(cfg)`` trains the first time and loads the checkpoint every
time after, so a grid that uses the same teacher for many students trains it once.

    qdistill teacher train --arch lenet --dataset mnist --classes 0-5
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from torch import nn

from . import __version__, checkpoint
from .config import DataConfig, TeacherConfig, to_dict
from .data import Task, cache_dir, make_task
from .errors import CheckpointError
from .teachers import build_teacher, count_parameters
from .train import FitResult, fit, seed_everything

# Options that do not change what is learned stay out of cache keys.
_NOT_IN_KEY = {"device", "eval_batch_size", "data_dir"}


def build_task(data: DataConfig, seed: int = 0) -> Task:
    """The Task (train/val/test) a DataConfig describes; ``seed`` draws the val split."""
    return make_task(
        data.dataset, data.classes, train_per_class=data.train_per_class,
        test_per_class=data.test_per_class, val_fraction=data.val_fraction,
        val_per_class=data.val_per_class, seed=seed, data_dir=data.data_dir,
    )


def config_key(cfg: Any) -> str:
    """A short stable hash of a config, ignoring options that do not change results."""
    def strip(d: Any) -> Any:
        if isinstance(d, dict):
            return {k: strip(v) for k, v in d.items() if k not in _NOT_IN_KEY}
        return d
    blob = json.dumps(strip(to_dict(cfg)), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def teacher_dir(cfg: TeacherConfig) -> Path:
    """Where the cached teacher of ``cfg`` lives (under the user cache dir)."""
    classes = (cfg.data.classes or "all").replace(",", "_")
    name = f"{cfg.arch}-{cfg.data.dataset}-{classes}-{config_key(cfg)}"
    return cache_dir() / "teachers" / name


def teacher_meta(cfg: TeacherConfig, task: Task, model: nn.Module) -> dict[str, Any]:
    """What a teacher checkpoint records, and what loading checks against."""
    return {
        "kind": "teacher", "arch": cfg.arch, "dataset": task.dataset,
        "classes": list(task.classes), "class_names": list(task.class_names),
        "num_classes": task.num_classes, "image_shape": list(task.image_shape),
        "config": to_dict(cfg), "config_key": config_key(cfg),
        "num_parameters": count_parameters(model), "qdistill_version": __version__,
    }


def train_teacher(
    cfg: TeacherConfig, out_dir: str | Path | None = None, task: Task | None = None,
    log: Any = print,
) -> tuple[nn.Module, FitResult]:
    """Train the teacher ``cfg`` describes into ``out_dir`` (resuming if interrupted)."""
    out = Path(out_dir) if out_dir is not None else teacher_dir(cfg)
    checkpoint.check_writable_dir(out, "teacher run directory")  # before any slow work
    task = task or build_task(cfg.data, cfg.train.seed)
    seed_everything(cfg.train.seed)  # the initial weights are part of "same seed, same run"
    model = build_teacher(cfg.arch, task.num_classes, task.image_shape)
    result = fit(model, task.train, task.val, task.test, cfg.train,
                 out_dir=out, run_meta=teacher_meta(cfg, task, model),
                 desc=f"teacher {cfg.arch}", log=log)
    return model, result


def load_teacher(
    path: str | Path, expect: dict[str, Any] | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Load a trained teacher from its run directory (or ``.../best`` stem).

    ``expect`` keys (e.g. ``{"dataset": "mnist", "classes": [0, 1, 2]}``) must match
    the checkpoint's metadata: a teacher of other classes is refused, not sliced.
    """
    p = Path(path)
    stem = p / "best" if p.is_dir() else p
    tensors, meta = checkpoint.load(stem, expect)
    if meta.get("kind") != "teacher":
        raise CheckpointError(f"{stem} is not a teacher checkpoint (kind={meta.get('kind')!r})")
    model = build_teacher(meta["arch"], meta["num_classes"], tuple(meta["image_shape"]))
    checkpoint.load_into(model, tensors, str(stem))
    model.eval()
    return model, meta


def get_teacher(
    cfg: TeacherConfig, task: Task | None = None, log: Any = print
) -> tuple[nn.Module, dict[str, Any]]:
    """The trained teacher for ``cfg``: loaded from the cache, or trained once."""
    out = teacher_dir(cfg)
    if checkpoint.exists(out / "best"):
        model, meta = load_teacher(out, expect={"config_key": config_key(cfg)})
        if log:
            log(f"teacher {cfg.arch}: cached in {out} "
                f"(test acc {meta['metrics']['test_acc']:.4f})")
        return model, meta
    model, _ = train_teacher(cfg, out, task=task, log=log)
    return load_teacher(out)
