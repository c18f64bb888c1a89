"""A run between epochs: its history and selected weights, the checkpoint that lets it
resume, and the files it ends with. ``fit`` and the lockstep loop
(``qdistill.lockstep``) both keep their runs through this module, so a run writes the
same files whichever trained it.

Files of a run directory:
- ``last.safetensors`` / ``last.json`` after every epoch: the model (``model.*``), the
  selected weights so far (``best.*``), Adam's state (``optim.*``), the torch RNG state
  (``rng.torch``; ``rng.torch.<rank>`` for the other ranks of a torchrun run), a loss's
  own parameters (``loss.*``), the history and the run's identity (``config.json``).
- ``metrics.jsonl``: one line per epoch.
- ``best.safetensors`` / ``best.json`` and ``result.json`` when the run ends.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError
from . import checkpoint


@dataclass
class FitResult:
    history: list[dict[str, float]]
    best_epoch: int  # 1-based; selected on validation accuracy
    val_acc: float  # at best_epoch
    test_acc: float  # at best_epoch: the number to report
    paper_best_test_acc: float  # max test acc over epochs: the paper's (biased) metric
    out_dir: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "best_epoch": self.best_epoch, "val_acc": self.val_acc, "test_acc": self.test_acc,
            "paper_best_test_acc_over_epochs": self.paper_best_test_acc,
            "epochs_run": len(self.history),
        }


@dataclass
class Progress:
    """What a run carries from epoch to epoch: its history and the selected weights."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None
    best_epoch: int = 0
    best_val: float = -math.inf

    @property
    def epoch(self) -> int:
        """The last complete epoch (0 before the first)."""
        return len(self.history)

    def add(self, record: dict[str, float], model: nn.Module) -> None:
        """Record an epoch and select on validation accuracy: the best one, the earliest
        on ties (a *copy* of the weights, not a reference to the live ones); with an
        empty validation split (val_acc NaN) the last epoch is selected."""
        self.history.append(record)
        val, epoch = record["val_acc"], record["epoch"]
        score = val if not math.isnan(val) else float(epoch)
        if score > self.best_val:
            self.best_val, self.best_epoch = score, epoch
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}


def run_identity(run_meta: dict[str, Any]) -> Any:
    """``run_meta`` as JSON reads it back: what ``config.json`` holds and what a resume
    compares."""
    return json.loads(json.dumps(run_meta, sort_keys=True, default=str))


def restore(out: Path, run_id: Any, model: nn.Module, opt: torch.optim.Optimizer,
            loss_module: nn.Module | None = None
            ) -> tuple[Progress, dict[str, torch.Tensor]] | None:
    """Load ``out/last`` into ``model``, ``opt`` (and the loss's parameters) and return
    the run's progress and the checkpoint's tensors (the caller restores its RNG from
    ``rng.torch``); None when there is no checkpoint. Another run's checkpoint is
    refused."""
    last = out / "last"
    checkpoint.remove_stale_temps(out)  # a kill mid-write (e.g. a lockstep epoch's)
    if not checkpoint.exists(last):
        return None
    tensors, meta = checkpoint.load(last)
    if meta.get("run") != run_id:
        raise CheckpointError(f"{out} holds a checkpoint of a different run; choose "
                              "another output directory or delete it")
    checkpoint.load_into(model, _strip("model.", tensors), str(last))
    if loss_module is not None:
        loss_module.load_state_dict(_strip("loss.", tensors))
    opt.load_state_dict(_unflatten_optimizer(tensors, meta["optim"]))
    progress = Progress(meta["history"], _strip("best.", tensors), meta["best_epoch"],
                        meta["best_val"])
    return progress, tensors


def epoch_record(epoch: int, train_loss: float, train_acc: float, val_acc: float,
                 test_acc: float, seconds: float) -> dict[str, Any]:
    """One line of ``metrics.jsonl`` (a run's history), as ``fit`` and the lockstep loop
    write it."""
    return {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc,
            "val_acc": val_acc, "test_acc": test_acc, "seconds": seconds}


def epoch_line(desc: str, epochs: int, record: dict[str, Any]) -> str:
    """The progress log line of an epoch just finished."""
    return (f"{desc} epoch {record['epoch']}/{epochs}: loss {record['train_loss']:.4f} "
            f"train {record['train_acc']:.4f} val {record['val_acc']:.4f} "
            f"test {record['test_acc']:.4f} ({record['seconds']:.1f}s)")


def write_epoch(out: Path, model: nn.Module, opt: torch.optim.Optimizer,
                progress: Progress, run_id: Any, rng_states: list[torch.Tensor],
                loss_module: nn.Module | None = None) -> None:
    """The checkpoint of the epoch just finished (creates ``out``: a run directory
    appears only once its first epoch is done)."""
    opt_tensors, opt_meta = _flatten_optimizer(opt)
    tensors = {
        **(_prefixed("loss.", loss_module.state_dict()) if loss_module is not None else {}),
        **_prefixed("model.", model.state_dict()),
        **_prefixed("best.", progress.best_state or {}),
        **opt_tensors,
        # rank 0 (or the one process) under "rng.torch", rank r > 0 under "rng.torch.r"
        **{"rng.torch" + (f".{r}" if r else ""): st for r, st in enumerate(rng_states)},
    }
    checkpoint.atomic_write_json(out / "config.json", run_id)
    lines = "".join(json.dumps(h) + "\n" for h in progress.history)
    checkpoint.atomic_write_bytes(out / "metrics.jsonl", lines.encode())
    checkpoint.save(out / "last", tensors, {
        "run": run_id, "epoch": progress.epoch, "history": progress.history,
        "best_epoch": progress.best_epoch, "best_val": progress.best_val, "optim": opt_meta,
    })


def finish(model: nn.Module, progress: Progress, out: Path | None,
           run_meta: dict[str, Any], write: bool = True) -> FitResult:
    """The run's end: the selected weights into ``model``, its result, and (``out`` set
    and ``write``) ``best.*`` and ``result.json``."""
    assert progress.best_state is not None
    model.load_state_dict(progress.best_state)
    history = progress.history
    best = history[progress.best_epoch - 1]
    result = FitResult(
        history=history, best_epoch=progress.best_epoch, val_acc=best["val_acc"],
        test_acc=best["test_acc"],
        paper_best_test_acc=max(h["test_acc"] for h in history),
        out_dir=str(out) if out else None,
    )
    if out is not None and write:
        checkpoint.save(out / "best", model.state_dict(),
                        dict(run_meta, metrics=result.summary()))
        # The data fingerprint (Task.fingerprint(), when the caller recorded one in
        # run_meta) says which data these numbers are about.
        fingerprint = {k: run_meta[k] for k in ("data_fingerprint",) if k in run_meta}
        checkpoint.atomic_write_json(out / "result.json",
                                     dict(result.summary(), **fingerprint, history=history))
    return result


def _flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{idx}.{k}"] = v
            else:
                scalars[f"{idx}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, idx, k = key.split(".", 2)
            state.setdefault(int(idx), {})[k] = v
    for key, v in meta["scalars"].items():
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = v
    return {"state": state, "param_groups": meta["param_groups"]}


def _prefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in tensors.items()}


def _strip(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
