"""One training loop for every model: teachers now, quantum students later.

    result = fit(model, task.train, task.val, task.test, TrainConfig(epochs=10),
                 out_dir="runs/lenet")

What it guarantees:
- Model selection on the validation split only: the weights kept are those of the
  epoch with the best validation accuracy (earliest on ties; the last epoch if the
  validation split is empty). They are a *copy* taken at that epoch, not a reference to
  the live weights. Test accuracy is measured every epoch for the record (and for the
  paper's "best test accuracy over epochs", reported separately and labelled as such),
  never for selection.
- Same seed, same numbers on CPU: python/numpy/torch are seeded, and the data order of
  epoch e is drawn from its own generator seeded with (seed, e), so it does not depend
  on anything that ran before.
- Resumable: with ``out_dir`` set, the end of every epoch atomically writes
  ``last.safetensors``/``last.json`` (model, optimiser, torch RNG, best weights so far,
  history). Calling ``fit`` again with the same run resumes after the last complete
  epoch and ends with the numbers an uninterrupted run gives.
- A non-finite (NaN or inf) training loss, or non-finite outputs on the evaluation
  images, stops the run with a clear error naming the epoch; that epoch's weights are
  neither checkpointed nor selected, and the checkpoint of the last good epoch stays on
  disk.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..config import TrainConfig, to_dict
from ..errors import QdistillError
from . import distributed
from .evaluation import NonFiniteOutputs, as_float, class_logits, evaluate
from .resume import (
    FitResult,
    Progress,
    epoch_line,
    epoch_record,
    finish,
    restore,
    run_identity,
    write_epoch,
)

log = logging.getLogger(__name__)

# loss_fn(logits, labels, soft_targets_or_None) -> scalar loss
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]
# called with each finished epoch's metrics (see fit)
EpochCallback = Callable[[dict[str, Any]], None]


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, _soft: Any = None) -> torch.Tensor:
    return F.cross_entropy(logits, labels)


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; asking for CUDA without it is an error."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as exc:
        raise QdistillError(f"unknown device {spec!r}; use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise QdistillError(f"device {spec!r} asked for, but this PyTorch sees no CUDA GPU")
    if device.type == "cuda" and device.index is None and distributed.is_distributed():
        device = torch.device("cuda", distributed.local_rank())  # one GPU per torchrun rank
    return device


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS needs a fixed workspace to be deterministic (PyTorch's reproducibility notes).
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def make_adam(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam; the fused kernel where PyTorch has one for these parameters (CPU since 2.4,
    CUDA): at batch 1 it cut a paper-v1 student step from 2.1 to 1.4 ms on one core."""
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    except (RuntimeError, TypeError):  # e.g. complex or unsupported-device parameters
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


@contextlib.contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` intra-op CPU threads (``None``: leave as is).

    Tiny batches are all overhead: at batch 1 a paper-v1 student step took 1.4 ms on
    one thread and 7.7 ms on two (2-core machine), so batch-1 runs use one thread.
    """
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


def fit(
    model: nn.Module,
    train: Any,
    val: Any,
    test: Any | None,
    cfg: TrainConfig,
    *,
    loss_fn: LossFn = cross_entropy,
    soft_targets: torch.Tensor | None = None,
    out_dir: str | Path | None = None,
    run_meta: dict[str, Any] | None = None,
    desc: str = "train",
    callbacks: Sequence[EpochCallback] = (),
) -> FitResult:
    """Train ``model`` on ``train`` (an ImageSet: uint8 ``images``, int64 ``labels``).

    ``soft_targets`` (N_train, K), when given, are handed to ``loss_fn`` batch by batch
    in the same order as the images (distillation passes cached teacher logits here).
    ``run_meta`` identifies the run (what it trains, on what); resuming into an
    ``out_dir`` that holds another run is refused. ``fit`` seeds everything from
    ``cfg.seed`` before training; seed before *building* the model too
    (``seed_everything``) so that its initial weights are reproducible.

    ``callbacks``: functions called at the end of every epoch, after its checkpoint is
    written, with that epoch's record (``epoch``, ``train_loss``, ``train_acc``,
    ``val_acc``, ``test_acc``, ``seconds``) plus ``best_epoch`` and ``run`` (the run
    directory or None): experiment tracking hangs off this (e.g.
    :class:`qdistill.training.tracking.TensorBoard`). Epochs restored by a resume are not
    replayed.

    Under ``torchrun`` (see :mod:`qdistill.training.distributed`) the model is wrapped in
    DistributedDataParallel, ``cfg.batch_size`` is the global batch, and only rank 0
    logs, writes files and calls the callbacks.
    """
    device = resolve_device(cfg.device)
    world, rank = distributed.world_size(), distributed.rank()
    main = rank == 0
    seed_everything(cfg.seed + rank, cfg.deterministic)  # rank 0 / one process: cfg.seed
    batch_size = distributed.local_batch_size(cfg.batch_size)
    model.to(device)
    # The model being trained, wrapped for DDP when there are several processes; `model`
    # itself stays the plain module (selection, evaluation and state dicts use it).
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    # A loss with parameters (e.g. a learned logit scale) trains with the model: Adam
    # takes both (the model's first, so its optimiser state keeps its indices) and the
    # checkpoints keep the loss's state under "loss.".
    loss_module = loss_fn if isinstance(loss_fn, nn.Module) and any(
        True for _ in loss_fn.parameters()) else None
    if loss_module is not None:
        if world > 1:  # its gradients would not be averaged across processes
            raise QdistillError("a loss with parameters (e.g. learned-scale) does not run "
                                "under torchrun; train it in one process")
        loss_module.to(device)
    opt = make_adam(model if loss_module is None else nn.ModuleList([model, loss_module]), cfg)
    run_meta = dict(run_meta or {}, train=to_dict(cfg))
    if world > 1:  # a DDP run resumes only with the same number of processes
        run_meta["world_size"] = world
    run_id = run_identity(run_meta)

    x_train, y_train = train.images.to(device), train.labels.to(device)
    if len(y_train) == 0:
        raise QdistillError("the training split is empty")
    soft = soft_targets.to(device) if soft_targets is not None else None
    if soft is not None and len(soft) != len(y_train):
        raise QdistillError(f"{len(soft)} soft targets for {len(y_train)} training images")

    progress = Progress()
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        # Nothing is created before the first epoch has finished: a run refused or
        # diverging in epoch 1 leaves no directory behind (write_epoch creates it).
        distributed.barrier()
        restored = restore(out, run_id, model, opt, loss_module)
        if restored is not None:
            progress, tensors = restored
            torch.set_rng_state(tensors["rng.torch" + (f".{rank}" if rank else "")])
            if main and progress.epoch < cfg.epochs:
                log.info(f"{desc}: resuming {out} after epoch {progress.epoch}")

    # One process: the epoch order is _epoch_order itself; N processes: rank r takes
    # positions r, r+N, ... of it (see distributed.EpochSampler).
    sampler = distributed.EpochSampler(
        len(y_train), lambda e: _epoch_order(len(y_train), cfg.seed, e), world, rank)
    steps = math.ceil(sampler.num_samples / batch_size)
    for epoch in range(progress.epoch + 1, cfg.epochs + 1):
        t0 = time.perf_counter()
        net.train()
        sampler.set_epoch(epoch)
        order = sampler.indices().to(device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = torch.zeros((), device=device, dtype=torch.long)
        labelled = torch.zeros((), device=device, dtype=torch.long)  # label >= 0
        bar = tqdm(range(steps), desc=f"{desc} epoch {epoch}/{cfg.epochs}", leave=False,
                   disable=None if main else True, mininterval=1.0)
        for s in bar:
            idx = order[s * batch_size:(s + 1) * batch_size]
            x, y = as_float(x_train[idx]), y_train[idx]
            logits = net(x)
            loss = loss_fn(logits, y, soft[idx] if soft is not None else None)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            # Accumulate on the device: no host sync per step.
            loss_sum += loss.detach() * len(y)
            correct += (class_logits(model, logits.detach()).argmax(1) == y).sum()
            seen += len(y)
            labelled += (y >= 0).sum()  # a transfer set's images (label -1) have none
        distributed.all_sum(loss_sum, correct, seen, labelled)
        train_loss = loss_sum.item() / seen.item()
        problem = (None if math.isfinite(train_loss) else
                   f"training loss became non-finite (NaN or inf: {train_loss})")
        if problem is None:
            try:
                val_acc = evaluate(model, val.images, val.labels, cfg.eval_batch_size)
                test_acc = (evaluate(model, test.images, test.labels, cfg.eval_batch_size)
                            if test is not None else float("nan"))
            except NonFiniteOutputs:  # the weights this epoch ended with are broken
                problem = "the model's outputs became non-finite (NaN or inf)"
        if problem is not None:
            where = ""
            if out is not None:
                where = (f"; the checkpoint of epoch {epoch - 1} is kept in {out}"
                         if epoch > 1 else "; no epoch had finished, so no checkpoint")
            raise QdistillError(
                f"{desc}: {problem} in epoch {epoch}{where}; lower the learning rate or "
                "check the inputs (on a GPU, an all-zero sample under amplitude encoding "
                "also shows up here)")
        record = epoch_record(epoch, train_loss, correct.item() / max(1, labelled.item()),
                              val_acc, test_acc, round(time.perf_counter() - t0, 3))
        progress.add(record, model)
        if main:
            log.info(epoch_line(desc, cfg.epochs, record))
        if out is not None:
            rng_states = distributed.gather_rng_states()  # collective: every rank calls it
            if main:
                write_epoch(out, model, opt, progress, run_id, rng_states, loss_module)
        if main:
            for callback in callbacks:
                callback(dict(record, best_epoch=progress.best_epoch,
                              run=str(out) if out is not None else None))

    result = finish(model, progress, out, run_meta, write=main)
    distributed.barrier()  # the other ranks may read the best checkpoint next
    return result
