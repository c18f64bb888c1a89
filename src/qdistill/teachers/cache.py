"""Teacher runs: train a teacher once, load it back.

Teachers are cached by their full config (architecture, data options, training
options) and by the content of the data they learn from (``Task.fingerprint()``, never
a dataset name or a path): ``get_teacher(cfg)`` trains the first time and loads the
checkpoint every time after, so a grid that uses the same teacher for many students
trains it once, and the same options on other data train another teacher.

    qdistill teacher train --arch lenet --dataset mnist --classes 0-5
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from .. import __version__
from ..config import TeacherConfig, to_dict, validate
from ..data import Task, cache_dir, dataset_label
from ..errors import CheckpointError, ConfigError
from ..training import checkpoint
from ..training.fit import EpochCallback, fit, seed_everything
from ..training.resume import FitResult
from ..training.tasks import build_task, config_key
from .models import build_teacher, count_parameters

log = logging.getLogger(__name__)


def teacher_key(cfg: TeacherConfig, task: Task) -> str:
    """The cache key of a teacher: its config and the fingerprint of its task's data."""
    return config_key(cfg, task.fingerprint())


def teacher_dir(cfg: TeacherConfig, task: Task | None = None) -> Path:
    """Where the cached teacher of ``cfg`` lives (under the user cache dir).

    The name holds the key of the config *and* of the data (``task``, built from
    ``cfg.data`` when not given): the same options on other images or labels are
    another teacher, the same images in another directory the same one.
    """
    if task is None:
        task = build_task(cfg.data, cfg.train.seed)
    classes = (cfg.data.classes or "all").replace(",", "_")
    name = f"{cfg.arch}-{dataset_label(cfg.data.dataset)}-{classes}-{teacher_key(cfg, task)}"
    return cache_dir() / "teachers" / name


def teacher_meta(cfg: TeacherConfig, task: Task, model: nn.Module) -> dict[str, Any]:
    """What a teacher checkpoint records, and what loading checks against."""
    return {
        "kind": "teacher", "arch": cfg.arch, "dataset": task.dataset,
        "classes": list(task.classes), "class_names": list(task.class_names),
        "num_classes": task.num_classes, "image_shape": list(task.image_shape),
        "config": to_dict(cfg), "config_key": teacher_key(cfg, task),
        "data_fingerprint": task.fingerprint(),
        "num_parameters": count_parameters(model), "qdistill_version": __version__,
    }


def train_teacher(
    cfg: TeacherConfig, out_dir: str | Path | None = None, task: Task | None = None,
    callbacks: Sequence[EpochCallback] = (),
) -> tuple[nn.Module, FitResult]:
    """Train the teacher ``cfg`` describes into ``out_dir`` (resuming if interrupted);
    ``callbacks`` get every epoch's metrics (:mod:`qdistill.training.tracking`)."""
    validate(cfg)  # ranges first: nothing is written for a config that cannot run
    if cfg.data.transfer is not None:
        raise ConfigError("a teacher trains on labelled images; a transfer set "
                          "(data.transfer) is for students", key="data.transfer")
    if out_dir is not None:
        checkpoint.check_writable_dir(out_dir, "teacher run directory")  # before slow work
    if task is None:
        task = build_task(cfg.data, cfg.train.seed)
    # The cache directory's name holds the data fingerprint, so it needs the task.
    out = Path(out_dir) if out_dir is not None else teacher_dir(cfg, task)
    checkpoint.check_writable_dir(out, "teacher run directory")
    seed_everything(cfg.train.seed)  # the initial weights are part of "same seed, same run"
    model = build_teacher(cfg.arch, task.num_classes, task.image_shape)
    result = fit(model, task.train, task.val, task.test, cfg.train,
                 out_dir=out, run_meta=teacher_meta(cfg, task, model),
                 desc=f"teacher {cfg.arch}", callbacks=callbacks)
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
    cfg: TeacherConfig, task: Task | None = None,
    callbacks: Sequence[EpochCallback] = (),
) -> tuple[nn.Module, dict[str, Any]]:
    """The trained teacher for ``cfg``: loaded from the cache, or trained once.

    The cache is keyed on ``cfg`` and on the content of the data (``task``: the task
    ``cfg.data`` describes, built here when not given), so a teacher trained on other
    images or labels under the same options is never reused.
    """
    validate(cfg)  # ranges before the data is read (train_teacher checks them too)
    if task is None:
        task = build_task(cfg.data, cfg.train.seed)
    out = teacher_dir(cfg, task)
    if checkpoint.exists(out / "best"):
        model, meta = load_teacher(out, expect={"config_key": teacher_key(cfg, task),
                                                "data_fingerprint": task.fingerprint()})
        log.info(f"teacher {cfg.arch}: cached in {out} (test acc "
                 f"{meta['metrics']['test_acc']:.4f}; same data, fingerprint "
                 f"{task.fingerprint()[:12]})")
        return model, meta
    model, _ = train_teacher(cfg, out, task=task, callbacks=callbacks)
    return load_teacher(out)
