"""One run prepared exactly as ``run_distill`` prepares it, stopped before training.

``prepare(cfg, out_dir)`` calls :func:`qdistill.distillation.run.run_distill` itself with
its ``fit`` swapped, for the duration of the call, for a function that records the
arguments and stops. So a lockstep run is checked, seeded, built, given its teacher's
soft targets and its run metadata by the very code a solo run uses: it refuses what a
solo run refuses (with the same message), its student has the initial weights the solo
run's has (``seed_everything(seed)`` then ``build_student``, PCA fitted on its own
training split) and its ``run_meta`` is the one the solo run records, so either path
resumes the other's checkpoints.
"""

from __future__ import annotations

import inspect
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from ..config import DistillConfig, TrainConfig
from ..distillation import run as distill
from ..logs import quiet
from ..training import fit as train

# fit's keyword arguments the lockstep loop implements; any other one that run_distill
# passes with a value other than fit's default makes the run train solo.
HANDLED = {"loss_fn", "soft_targets", "out_dir", "run_meta", "desc", "callbacks"}
_SWAP = threading.Lock()  # one swap of distill.fit at a time


class _Prepared(Exception):
    """Raised by the stand-in for ``fit``: the run is prepared, nothing trained."""


@dataclass
class Prepared:
    """What ``run_distill`` hands to ``fit`` for one run (and the config it came from)."""

    cfg: DistillConfig  # as given (a solo fallback calls run_distill with it again)
    out_dir: Path | None
    model: nn.Module
    train: Any
    val: Any
    test: Any
    train_cfg: TrainConfig
    loss_fn: Any
    soft_targets: Any
    run_meta: dict[str, Any]
    desc: str
    callbacks: tuple = ()
    unhandled: dict[str, Any] = field(default_factory=dict)  # other fit arguments


def prepare(cfg: DistillConfig, out_dir: str | Path | None) -> Prepared:
    """The run ``cfg`` as ``run_distill(cfg, out_dir)`` would hand it to ``fit``.

    Raises what ``run_distill`` raises before training (bad options, a wrong teacher,
    an output directory that cannot be written, ...).
    """
    seen: dict[str, Any] = {}

    def capture(model, train_set, val, test, train_cfg, **kwargs):  # noqa: ANN001
        seen.update(model=model, train=train_set, val=val, test=test, train_cfg=train_cfg,
                    kwargs=kwargs)
        raise _Prepared

    with _SWAP:
        original = distill.fit
        distill.fit = capture
        try:
            with quiet():  # the run's own lines come from the lockstep loop
                distill.run_distill(cfg, out_dir)
        except _Prepared:
            pass
        finally:
            distill.fit = original
    if not seen:  # run_distill returned without calling fit: nothing to lockstep
        raise RuntimeError("run_distill did not reach fit")
    kwargs = seen["kwargs"]
    defaults = {k: p.default for k, p in inspect.signature(train.fit).parameters.items()}
    unhandled = {k: v for k, v in kwargs.items()
                 if k not in HANDLED and not _same_default(v, defaults.get(k, object()))}
    return Prepared(
        cfg=cfg, out_dir=Path(out_dir) if out_dir is not None else None,
        model=seen["model"], train=seen["train"], val=seen["val"], test=seen["test"],
        train_cfg=seen["train_cfg"], loss_fn=kwargs.get("loss_fn", train.cross_entropy),
        soft_targets=kwargs.get("soft_targets"), run_meta=kwargs.get("run_meta") or {},
        desc=kwargs.get("desc", "train"), callbacks=tuple(kwargs.get("callbacks", ())),
        unhandled=unhandled)


def _same_default(value: Any, default: Any) -> bool:
    try:
        return bool(value is default or value == default)
    except Exception:  # e.g. a tensor compared with None
        return False
