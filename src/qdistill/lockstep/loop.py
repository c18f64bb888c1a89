"""The lockstep training loop: ``fit``, step for step, for R prepared runs at once.

Per run, everything a solo ``fit`` keeps is kept apart: the seed (a ``torch.Generator``
seeded as ``fit`` seeds the global RNG, whose state goes into the checkpoints as
``rng.torch``), the data order (``fit._epoch_order``), the soft targets, the loss's
temperature and alpha (per-run tensors), Adam's lr / weight decay and moments (stacked:
Adam is elementwise), the validation-based selection, the history and the files
(written by :mod:`qdistill.training.resume`, as ``fit`` writes them). What is
shared is the step: one forward and one backward of the run-batched twin
(:mod:`.twin`) and one fused Adam call per distinct set of Adam settings.

A run whose training loss or evaluation outputs become non-finite stops with ``fit``'s
error at that epoch (its last good checkpoint kept); the others go on.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import to_dict
from ..errors import QdistillError
from ..training import checkpoint, resume
from ..training.evaluation import as_float, class_logits
from ..training.fit import _epoch_order, make_adam, resolve_device
from ..training.resume import FitResult, Progress, finish, restore, run_identity, write_epoch
from .prepare import Prepared
from .proxies import Unsupported, fold
from .step import GroupAdam, GroupLoss
from .twin import Twin

log = logging.getLogger(__name__)

# Images per run per evaluation chunk: at most EVAL_ROWS, and fewer where one chunk's
# activations (all runs) would pass EVAL_CHUNK_BYTES (the results do not depend on it;
# the shot sampling keeps the solo run's eval batches whatever the chunk). Measured,
# paper-v1 runs x 1,200 images, one thread, rows 16 / 32 / 48 / 96: 12 runs 0.42 /
# 0.35 / 0.35 / 0.35 s, 24 runs 0.77 / 0.73 / 0.71 / 1.02 s; below 16 the convolutions
# run grouped (slower), above ~50 a chunk falls out of the caches.
EVAL_ROWS = 48
EVAL_CHUNK_BYTES = 64 * 1024**2


@dataclass
class RunState:
    """One run of a lockstep group: what ``fit`` keeps for it."""

    prep: Prepared
    device: torch.device
    opt: torch.optim.Optimizer
    gen: torch.Generator  # the run's stand-in for the solo run's global torch RNG
    run_meta: dict[str, Any]
    run_id: Any
    progress: Progress = field(default_factory=Progress)
    error: BaseException | None = None
    result: FitResult | None = None

    @property
    def out(self) -> Path | None:
        return self.prep.out_dir

    @property
    def model(self) -> nn.Module:
        return self.prep.model


def init_run(prep: Prepared) -> RunState:
    """``fit``'s set-up for one run (device, optimiser, seed, resume); a run ``fit``
    would refuse gets its error (``RunState.error``)."""
    cfg = prep.train_cfg
    device = resolve_device(cfg.device)
    model = prep.model.to(device)
    opt = make_adam(model, cfg)
    run_meta = dict(prep.run_meta, train=to_dict(cfg))
    run_id = run_identity(run_meta)
    state = RunState(prep, device, opt, torch.Generator().manual_seed(cfg.seed), run_meta,
                     run_id)
    if len(prep.train.labels) == 0:
        state.error = QdistillError("the training split is empty")
        return state
    soft = prep.soft_targets
    if soft is not None and len(soft) != len(prep.train.labels):
        state.error = QdistillError(f"{len(soft)} soft targets for {len(prep.train.labels)} "
                                    "training images")
        return state
    out = prep.out_dir
    if out is not None:
        try:
            restored = restore(out, run_id, model, opt)
        except QdistillError as exc:
            state.error = exc
            return state
        if restored is not None:
            state.progress, tensors = restored
            state.gen.set_state(tensors["rng.torch"])
            if state.progress.epoch < cfg.epochs:
                log.info(f"{prep.desc}: resuming {out} after epoch {state.progress.epoch}")
    return state


def finish_run(run: RunState) -> None:
    """``fit``'s ending: the selected weights into the student, ``best.*`` and
    ``result.json`` written, ``run.result`` set."""
    run.result = finish(run.model, run.progress, run.out, run.run_meta)


# --------------------------------------------------------------------------- data
def _unique(images: Sequence[torch.Tensor], labels: Sequence[torch.Tensor],
            device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(U distinct image sets stacked, their labels, run -> set index)."""
    uniq: list[tuple[torch.Tensor, torch.Tensor]] = []
    index = []
    for x, y in zip(images, labels, strict=True):
        for j, (ux, uy) in enumerate(uniq):
            if (ux is x or (ux.shape == x.shape and torch.equal(ux, x))) and \
                    (uy is y or (uy.shape == y.shape and torch.equal(uy, y))):
                index.append(j)
                break
        else:
            uniq.append((x, y))
            index.append(len(uniq) - 1)
    xs = torch.stack([u[0] for u in uniq]).to(device)
    ys = torch.stack([u[1] for u in uniq]).to(device)
    return xs, ys, torch.tensor(index, device=device)


def activation_bytes(model: nn.Module, image_shape: Sequence[int]) -> int:
    """Bytes of every module's output for one image (an over-estimate of what one
    sample's forward holds; the backward keeps about as much again)."""
    from ..quantum.measure import Measurement

    total = 0

    def hook(_m: nn.Module, _i: Any, out: Any) -> None:
        nonlocal total
        for t in (out if isinstance(out, tuple | list) else (out,)):
            if isinstance(t, torch.Tensor):
                total += t.numel() * t.element_size()

    shots = [(m, m.shots) for m in model.modules() if isinstance(m, Measurement)]
    handles = [m.register_forward_hook(hook) for m in model.modules()]
    was = model.training
    try:
        for m, _ in shots:
            m.shots = None
        model.eval()
        device = next(model.parameters()).device
        with torch.no_grad():
            model(torch.full((2, *image_shape), 0.5, device=device))
        return max(1, total // 2)
    finally:
        for h in handles:
            h.remove()
        for m, n in shots:
            m.shots = n
        model.train(was)


# --------------------------------------------------------------------------- loop
class Lockstep:
    """R runs (all after the same epoch) as one run-batched model, its stacked Adam,
    its loss and its data: :meth:`train_epoch` and :meth:`evaluate` are ``fit``'s
    epoch, for every run at once."""

    def __init__(self, runs: list[RunState]):
        self.runs = runs
        R = self.R = len(runs)
        first = runs[0]
        self.cfg = cfg = first.prep.train_cfg
        self.device = device = first.device
        self.template = template = first.model
        twin = self.twin = Twin([r.model for r in runs], [r.gen for r in runs])
        few = [as_float(r.prep.train.images[:2].to(device)) for r in runs]
        twin.self_check(few)
        twin.check_random_streams(torch.cat(few))
        self.shots = any(m.measurement.shots is not None for m in twin.measurements)
        if self.shots:
            circuit = getattr(twin.template, "circuit", None)
            if len(twin.measurements) != 1 or getattr(circuit, "measurement", None) \
                    is not twin.measurements[0]:
                raise Unsupported("shots outside the circuit's own measurement")
        self.adam = GroupAdam(twin, [r.opt for r in runs], [r.model for r in runs])
        self.loss_fn = GroupLoss([r.prep.loss_fn for r in runs],
                                 list(getattr(template, "class_outputs", None) or []), device)
        if self.loss_fn.mode == "kd" and not self.loss_fn.cols:
            raise Unsupported("a KD loss for a student without class_outputs")
        self.x, self.y, self.task = _unique([r.prep.train.images for r in runs],
                                            [r.prep.train.labels for r in runs], device)
        self.n_train = n_train = self.x.shape[1]
        self.soft = None
        if self.loss_fn.mode != "ce":
            k = next(r.prep.soft_targets.shape[-1] for r in runs
                     if r.prep.soft_targets is not None)
            self.soft = torch.stack([
                r.prep.soft_targets.to(device).float() if r.prep.soft_targets is not None
                else torch.zeros(n_train, k, device=device) for r in runs])
        self.evals: dict[str, Any] = {}
        for split in ("val", "test"):
            sets = [getattr(r.prep, split) for r in runs]
            self.evals[split] = None if any(s is None for s in sets) else _unique(
                [s.images for s in sets], [s.labels for s in sets], device)
        per_sample = activation_bytes(template, tuple(self.x.shape[2:]))
        self.eval_rows = max(1, min(cfg.eval_batch_size, EVAL_ROWS,
                                    EVAL_CHUNK_BYTES // (R * per_sample)))
        self.arange = torch.arange(R, device=device)

    def train_epoch(self, epoch: int, max_steps: int | None = None
                    ) -> tuple[list[float], list[int], int, list[int]]:
        """One epoch of training steps (``max_steps``: stop early, for benchmarks):
        every run's summed loss and correct count, the samples seen per run, and every
        run's count of labelled samples (a transfer set's have label -1)."""
        R, b, twin, template = self.R, self.cfg.batch_size, self.twin, self.template
        twin.train()
        orders = torch.stack([_epoch_order(self.n_train, r.prep.train_cfg.seed, epoch)
                              for r in self.runs]).to(self.device)
        loss_sum = torch.zeros(R, device=self.device)
        correct = torch.zeros(R, device=self.device, dtype=torch.long)
        labelled = torch.zeros(R, device=self.device, dtype=torch.long)
        seen = 0
        rows, runs_col = self.task[:, None], self.arange[:, None]
        steps = math.ceil(self.n_train / b)
        for s in range(steps if max_steps is None else min(steps, max_steps)):
            idx = orders[:, s * b:(s + 1) * b]
            bb = idx.shape[1]
            x = as_float(self.x[rows, idx])
            y = self.y[rows, idx]
            out = twin(fold(x))
            losses = self.loss_fn(out, y, self.soft[runs_col, idx]
                                  if self.soft is not None else None)
            self.adam.zero_grad()
            losses.sum().backward()
            self.adam.step()
            loss_sum += losses.detach() * bb
            correct += (class_logits(template, out.detach()).reshape(R, bb, -1).argmax(-1)
                        == y).sum(1)
            labelled += (y >= 0).sum(1)
            seen += bb
        return loss_sum.tolist(), correct.tolist(), seen, labelled.tolist()

    def evaluate(self, split: str, problems: dict[int, str]) -> list[float]:
        if self.evals[split] is None:
            return [float("nan")] * self.R
        return _accuracies(self.twin, self.runs, self.evals[split], self.cfg.eval_batch_size,
                           self.eval_rows, self.shots, problems)


def train_group(runs: list[RunState], start_epoch: int) -> None:
    """Train ``runs`` (all after epoch ``start_epoch - 1``) in lockstep to the end;
    each run ends with ``run.result`` or ``run.error``. Raises ``Unsupported`` (or
    anything unexpected) for the caller to train the unfinished runs solo."""
    group = Lockstep(runs)
    twin, cfg = group.twin, group.cfg
    for epoch in range(start_epoch, cfg.epochs + 1):
        t0 = time.perf_counter()
        losses_epoch, corrects, seen, labelled = group.train_epoch(epoch)
        for r, run in enumerate(runs):  # a sampling failure (NaN probabilities) is fatal
            if twin.errors.get(r) is not None and run.error is None:
                run.error = twin.errors[r]
        problems: dict[int, str] = {}
        for r, run in enumerate(runs):
            if run.error is None:
                tl = losses_epoch[r] / seen
                if not math.isfinite(tl):
                    problems[r] = f"training loss became non-finite (NaN or inf: {tl})"
        for r in problems:
            twin.alive[r] = False
        val = group.evaluate("val", problems)
        test = group.evaluate("test", problems)
        seconds = round(time.perf_counter() - t0, 3)
        with checkpoint.deferred_sync():  # every run's files of this epoch, two syncs
            for r, run in enumerate(runs):
                if run.error is not None:
                    continue
                if r in problems:
                    run.error = _diverged(run, problems[r], epoch)
                    twin.alive[r] = False
                    continue
                record = resume.epoch_record(epoch, losses_epoch[r] / seen,
                                             corrects[r] / max(1, labelled[r]), val[r],
                                             test[r], seconds)
                group.adam.sync(r, run.model, run.opt)
                run.progress.add(record, run.model)
                log.info(resume.epoch_line(run.prep.desc, cfg.epochs, record))
                if run.out is not None:
                    write_epoch(run.out, run.model, run.opt, run.progress, run.run_id,
                                [run.gen.get_state()])
        if all(run.error is not None for run in runs):
            break


def _diverged(run: RunState, problem: str, epoch: int) -> QdistillError:
    """``fit``'s error for a run whose loss or outputs became non-finite."""
    where = ""
    if run.out is not None:
        where = (f"; the checkpoint of epoch {epoch - 1} is kept in {run.out}"
                 if epoch > 1 else "; no epoch had finished, so no checkpoint")
    return QdistillError(
        f"{run.prep.desc}: {problem} in epoch {epoch}{where}; lower the learning rate or "
        "check the inputs (on a GPU, an all-zero sample under amplitude encoding "
        "also shows up here)")


@torch.no_grad()
def _accuracies(twin: Twin, runs: list[RunState], data: Any, eval_batch: int, chunk: int,
                shots: bool, problems: dict[int, str]) -> list[float]:
    """``train.evaluate`` for every run (NaN for an empty split); a run whose outputs
    are non-finite gets its entry in ``problems``."""
    R = len(runs)
    x_u, y_u, task = data
    n = x_u.shape[1]
    if n == 0:
        return [float("nan")] * R
    twin.eval()
    template = twin.template
    try:
        if not shots:
            parts = []
            for i in range(0, n, chunk):
                x = as_float(x_u[task, i:i + chunk])
                parts.append(class_logits(template, twin(fold(x))).reshape(R, x.shape[1], -1))
            logits = torch.cat(parts, dim=1)
        else:
            # The circuit's exact probabilities in any chunks, then each run's shots drawn
            # over the solo run's eval batches (same draws), then the head.
            twin.capture = True
            try:
                probs = _probs(twin, x_u, task, n, chunk)
            finally:
                twin.capture = False
            proxy = twin.measurements[0]
            outs = torch.stack([
                torch.cat([proxy.sample_run(r, probs[r, i:i + eval_batch])
                           for i in range(0, n, eval_batch)])
                if twin.alive[r] and r not in problems else
                proxy.runs[r]._readout(probs[r]) for r in range(R)])
            parts = []
            for i in range(0, n, chunk):
                o = outs[:, i:i + chunk]
                parts.append(class_logits(template, twin.logits_from_circuit(fold(o)))
                             .reshape(R, o.shape[1], -1))
            logits = torch.cat(parts, dim=1)
    finally:
        twin.train()
    accs = []
    for r in range(R):
        if r in problems or runs[r].error is not None:
            accs.append(float("nan"))
            continue
        lr = logits[r]
        if not bool(torch.isfinite(lr).all()):
            problems[r] = "the model's outputs became non-finite (NaN or inf)"
            accs.append(float("nan"))
            continue
        labels = y_u[task[r]]
        accs.append((lr.argmax(1).cpu() == labels.cpu()).float().mean().item())
    return accs


def _probs(twin: Twin, x_u: torch.Tensor, task: torch.Tensor, n: int, chunk: int
           ) -> torch.Tensor:
    """The circuit's exact probabilities for every run's images, ``(R, n, K)``."""
    parts = []
    for i in range(0, n, chunk):
        x = as_float(x_u[task, i:i + chunk])
        parts.append(twin.circuit_outputs(fold(x)).reshape(twin.R, x.shape[1], -1))
    return torch.cat(parts, dim=1)
