"""The Python entry points a notebook uses: the same runs as the command line.

    import qdistill
    teacher = qdistill.train_teacher("mlp", data="digits", classes="0-3", epochs=3)
    result = qdistill.distill(student="paper-v2", teacher=teacher.model, data="digits",
                              classes="0-3", qubits=4, epochs=2, out="runs/nb")
    print(result.test_acc, result.run_dir)

Options are the command line's, by their config names (``epochs``, ``batch_size``,
``lr``, ``seed``, ``device``, ``qubits``, ``shots``, ``temperature``, ``alpha``,
``loss``, ``train_per_class``, ...: any field of :class:`~qdistill.config.DistillConfig`
or :class:`~qdistill.config.TeacherConfig` sections, checked with the same ranges);
an unknown one is an error listing them. Runs write the same run directory (config,
metrics, checkpoints, resume) as the CLI, so ``qdistill evaluate`` / ``export`` work
on them.

``data`` is a dataset name, a ``.npz`` file, an image-folder directory, or your arrays
(``qdistill.data.from_arrays`` / ``from_dataset``): those are written once to a
content-addressed ``.npz`` in the cache, so a run can always be rebuilt from its config.
``teacher`` is a name, ``FILE.py:NAME``, an ``.onnx`` file, a teacher run directory,
``None`` (no teacher), or a trained ``nn.Module`` of your own. ``student`` is a name or
``FILE.py:NAME`` (see :mod:`qdistill.students.user`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from .config import DistillConfig, TeacherConfig, load_config
from .data import RawDataset, cache_dir
from .errors import ConfigError
from .training.fit import EpochCallback
from .training.resume import FitResult

__all__ = ["DistillResult", "TeacherResult", "distill", "train_teacher"]


@dataclasses.dataclass
class DistillResult:
    """What :func:`distill` returns: the trained student (best epoch, eval mode) and
    its numbers; ``run_dir`` holds everything the CLI would write."""

    student: nn.Module
    test_acc: float  # at the epoch selected on validation
    val_acc: float
    best_epoch: int
    history: list[dict[str, float]]
    run_dir: Path | None
    config: dict[str, Any]
    meta: dict[str, Any]


@dataclasses.dataclass
class TeacherResult:
    """What :func:`train_teacher` returns: the trained teacher and where it lives."""

    model: nn.Module
    test_acc: float
    run_dir: Path
    meta: dict[str, Any]


# Keyword aliases: the CLI's names where they differ from the config field.
_ALIASES = {"loss": "variant"}
# Fields the functions' own arguments set (student=, teacher=, data=, classes=).
_SET_BY_ARGUMENT = {"name", "teacher", "dataset", "classes"}


def _overrides(cls: type, options: dict[str, Any]) -> list[str]:
    """``epochs=3`` -> ``"train.epochs=3"``: each keyword is the one field of that name
    in a section of ``cls`` (field names are unique across sections)."""
    fields: dict[str, str] = {}
    for section, tp in typing.get_type_hints(cls).items():
        if dataclasses.is_dataclass(tp):
            fields.update({f.name: f"{section}.{f.name}" for f in dataclasses.fields(tp)})
    out = []
    for key, value in options.items():
        name = _ALIASES.get(key, key)
        if name not in fields or name in _SET_BY_ARGUMENT:
            valid = sorted({*fields, *_ALIASES} - _SET_BY_ARGUMENT)
            raise ConfigError(f"unknown option {key!r}; valid: {', '.join(valid)}")
        out.append(f"{fields[name]}={json.dumps(value)}")
    return out


def _dataset(data: str | os.PathLike[str] | RawDataset) -> str:
    """A dataset string a config can record; your arrays become a cached ``.npz``."""
    if not isinstance(data, RawDataset):
        return os.fspath(data)
    arrays = {"x_train": data.train_images.numpy(), "y_train": data.train_labels.numpy(),
              "x_test": data.test_images.numpy(), "y_test": data.test_labels.numpy(),
              "class_names": np.asarray(data.class_names, dtype=str),
              "layout": np.asarray("NCHW")}
    h = hashlib.sha256()
    for key in sorted(arrays):
        h.update(key.encode())
        h.update(np.ascontiguousarray(arrays[key]).tobytes())
    path = cache_dir() / "arrays" / f"{data.name}-{h.hexdigest()[:16]}.npz"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    return str(path)


def distill(student: str = "paper-v1", teacher: str | nn.Module | None = "lenet",
            data: str | os.PathLike[str] | RawDataset = "mnist", *,
            classes: str | None = "0-5", out: str | os.PathLike[str] | None = None,
            callbacks: Sequence[EpochCallback] = (), **options: Any) -> DistillResult:
    """Train one student with (or, ``teacher=None``, without) a teacher; see the module
    docstring. The defaults are the command line's (the paper's student protocol)."""
    from .distillation.run import run_distill

    module = teacher if isinstance(teacher, nn.Module) else None
    spec = "none" if teacher is None else ("none" if module is not None else str(teacher))
    cfg = load_config(DistillConfig, None, [
        f"student.name={json.dumps(student)}", f"kd.teacher={json.dumps(spec)}",
        f"data.dataset={json.dumps(_dataset(data))}",
        f"data.classes={json.dumps(classes)}" if classes is not None else "data.classes=",
        *_overrides(DistillConfig, options)])
    model, result, meta = run_distill(cfg, out, teacher=module, callbacks=callbacks)
    return _distill_result(model, result, meta, out)


def _distill_result(model: nn.Module, result: FitResult, meta: dict[str, Any],
                    out: str | os.PathLike[str] | None) -> DistillResult:
    return DistillResult(model.eval(), result.test_acc, result.val_acc, result.best_epoch,
                         result.history, Path(out) if out is not None else None,
                         meta["config"], meta)


def train_teacher(arch: str = "lenet", data: str | os.PathLike[str] | RawDataset = "mnist",
                  *, classes: str | None = "0-5", out: str | os.PathLike[str] | None = None,
                  callbacks: Sequence[EpochCallback] = (), **options: Any) -> TeacherResult:
    """Train (or load from the cache) a teacher; ``out`` None = the teacher cache, keyed
    by config and data content, as ``qdistill teacher train`` without ``--out``."""
    from .teachers.cache import get_teacher, load_teacher, teacher_dir
    from .teachers.cache import train_teacher as train

    cfg = load_config(TeacherConfig, None, [
        f"arch={json.dumps(arch)}", f"data.dataset={json.dumps(_dataset(data))}",
        f"data.classes={json.dumps(classes)}" if classes is not None else "data.classes=",
        *_overrides(TeacherConfig, options)])
    if out is not None:
        train(cfg, out, callbacks=callbacks)
        model, meta = load_teacher(out)
        run_dir = Path(out)
    else:
        model, meta = get_teacher(cfg, callbacks=callbacks)
        run_dir = teacher_dir(cfg)
    return TeacherResult(model, meta["metrics"]["test_acc"], run_dir, meta)
