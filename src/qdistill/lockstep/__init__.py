"""Train many student runs of one architecture in one process, in lockstep.

    outcomes = run_lockstep([cfg_seed0, cfg_seed1, ...], ["runs/a", "runs/b", ...])
    # each: (student, FitResult, run metadata), as run_distill returns, or the exception

R runs that can share a step (same student configuration, same data options and
sizes, same epochs, batch size and evaluation options, same kind of KD loss; the seed,
the teacher or none, temperature, alpha, learning rate and weight decay may differ)
are trained as one run-batched model (:mod:`.twin`) by one loop (:mod:`.loop`): one
forward, one backward and one fused Adam call per step for all of them. Each run is
prepared by ``run_distill`` itself (:mod:`.prepare`), so it gets the checks, initial
weights, soft targets and run metadata of a solo run, and it writes exactly the files
a solo run writes (``config.json``, ``metrics.jsonl``, ``last.*`` every epoch,
``best.*``, ``result.json``), so a run is resumed by either path.

What is the same as in a solo run, exactly: the initial weights, every random stream (a
run's dropout masks and measurement seed come from its own ``torch.Generator`` whose
state is the solo run's global RNG state at the same point; the ``rng.torch`` saved
in every checkpoint is identical), each epoch's data order, the soft targets, the
number of Adam steps, the selection rule and the files' format. What is not: float
rounding. A grouped convolution, a batched GEMM, the native front-end kernel
(:mod:`.native`, on by default where a C compiler is found; ``QDISTILL_NATIVE=0``: off)
or an elementwise kernel over the folded batch rounds differently from the solo
kernels (about 1e-7 relative per step, and it depends on which runs share the group
and the run's place in it). Over a few
dozen steps the runs agree to ~1e-6 (``tests/test_lockstep.py``: accuracies and
selected epochs equal, weights within 1e-5). Over hundreds of batch-1 steps they do
not: the paper-v1 student's training is chaotic (a pre-activation at a ReLU or max-pool
boundary flips now and then and the difference grows); a solo run whose first weight
is moved by 1e-7 drifts from the unperturbed one just as far within one epoch (train
loss 1e-4 apart, weights 0.2 apart after 3 epochs). A lockstep grid is therefore a
fresh draw of the same experiment, like the same grid run on another CPU; ``qdistill
reproduce --lockstep off`` trains one run at a time, bit for bit as before.

Anything the run-batched model cannot represent (noise, a student whose parts it cannot
batch, a loop failure) falls back to training those runs solo, resuming from their
last checkpoint.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..config import DistillConfig, to_dict
from ..distillation.run import run_distill
from ..quantum.memory import available_memory_bytes
from ..training import distributed
from ..training.fit import resolve_device, seed_everything
from .loop import RunState, activation_bytes, finish_run, init_run, train_group
from .prepare import Prepared, prepare
from .proxies import Unsupported
from .twin import Twin

log = logging.getLogger(__name__)

__all__ = ["MAX_GROUP", "Outcome", "Prepared", "Twin", "Unsupported", "describe_groups",
           "lockstep_key", "makespan", "max_group_size", "plan_groups", "run_bytes", "run_lockstep"]

Outcome = Any  # (student, FitResult, run metadata) or the exception the run raised
# Runs per group at most (beyond this the step is bound by memory bandwidth: more runs
# per group buy nothing, see docs/performance.md).
MAX_GROUP = 256
# Fraction of the available memory the lockstep groups running at once may take.
MEMORY_FRACTION = 0.5


def lockstep_key(cfg: DistillConfig) -> str | None:
    """Runs with the same key can share a step; ``None``: this run trains solo (noise).

    The key holds everything but what may differ per run: the seed, the teacher, the
    KD temperature and alpha, the learning rate and weight decay, and the dataset itself
    where its images have the same shape and class count (MNIST and Fashion-MNIST runs
    of one setting share a group: a run's images are its own either way).
    """
    from ..students import resolve_student

    try:
        student = resolve_student(cfg.student, strict=True)
    except Exception:
        return None  # refused options: the solo run reports them
    if student.noise:
        return None
    train = {k: v for k, v in to_dict(cfg.train).items()
             if k not in ("seed", "lr", "weight_decay")}
    data = to_dict(cfg.data)
    images = _images_of(str(data.pop("dataset")), data.pop("data_dir"))
    return json.dumps({"student": to_dict(student), "data": data, "images": images,
                       "train": train, "loss": cfg.kd.variant}, sort_keys=True)


@functools.lru_cache(maxsize=64)
def _images_of(dataset: str, data_dir: str | None) -> str:
    """"(C, H, W) x K classes" of a dataset (its arrays are memoised per process), or
    its name where it cannot be read (its runs then report why)."""
    from ..data.raw import load_arrays

    try:
        loaded = load_arrays(dataset, data_dir)
        shape = tuple(loaded.arrays["train_images"].shape[1:])
        return f"{shape} x {len(loaded.class_names)} classes"
    except Exception:
        return dataset


def _compat_key(prep: Prepared) -> str | None:
    """The key of a prepared run (its resolved config and its data's sizes)."""
    if prep.callbacks or prep.unhandled or distributed.is_distributed():
        return None
    loss = prep.loss_fn
    if isinstance(loss, torch.nn.Module) and any(True for _ in loss.parameters()):
        return None  # a loss trained with the student (learned-scale): fit's own loop
    model = prep.model
    circuit = getattr(model, "circuit", None)
    if circuit is None or getattr(circuit, "noise", None) is not None:
        return None
    train = {k: v for k, v in to_dict(prep.train_cfg).items()
             if k not in ("seed", "lr", "weight_decay")}
    sizes = [len(prep.train.labels), len(prep.val.labels),
             len(prep.test.labels) if prep.test is not None else -1,
             list(prep.train.images.shape[1:])]
    return json.dumps({"model": type(model).__qualname__,
                       "student": prep.run_meta.get("student"), "train": train,
                       "sizes": sizes}, sort_keys=True, default=str)


def run_bytes(model: torch.nn.Module, image_shape: Sequence[int], num_classes: int,
              n_train: int, n_eval: int, batch: int) -> int:
    """Estimated bytes one run adds to a lockstep group: its parameters about seven
    times (stacked, gradient, two Adam moments, its own student, the best weights, a
    checkpoint copy), its images (uint8) and soft targets, and the activations of its
    training batch (forward and backward, 3x the forward's module outputs)."""
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    pixels = math.prod(image_shape)
    data = (n_train + n_eval) * pixels + n_train * num_classes * 4
    try:
        act = activation_bytes(model, image_shape)
    except Exception:  # e.g. a PCA reduction not fitted yet: a rough bound instead
        qubits = int(getattr(getattr(model, "circuit", None), "n_qubits", 1))
        act = 16 * pixels * 4 + 8 * (2 ** qubits) * 8
    return 7 * params + data + 3 * act * batch


def max_group_size(cfg: DistillConfig, groups_at_once: int = 1) -> int:
    """How many runs like ``cfg`` one lockstep group may hold: ``MAX_GROUP``, or fewer
    when ``groups_at_once`` such groups would not fit in ``MEMORY_FRACTION`` of the
    memory available on the run's device (checked before any group starts)."""
    from ..students import build_student
    from ..training.tasks import build_task

    task = build_task(cfg.data, cfg.train.seed)
    state = torch.get_rng_state()
    try:
        student = build_student(cfg.student, task.num_classes, task.image_shape)
    finally:
        torch.set_rng_state(state)
    per_run = run_bytes(student, task.image_shape, task.num_classes, len(task.train.labels),
                        len(task.val.labels) + len(task.test.labels), cfg.train.batch_size)
    device = resolve_device(cfg.train.device)
    budget = MEMORY_FRACTION * available_memory_bytes(device) / max(1, groups_at_once)
    return int(max(1, min(MAX_GROUP, budget // per_run)))


def plan_groups(items: Sequence[tuple[str, DistillConfig]], workers: int = 1,
                cap: Callable[[DistillConfig], int] | None = None) -> list[list[str]]:
    """Split runs ``(id, config)`` into lockstep groups: same :func:`lockstep_key`,
    at most ``cap(cfg)`` runs each (default :func:`max_group_size` for ``workers``
    groups at once), then the largest halved while that shortens the estimated wall
    time on ``workers`` workers (:func:`makespan`); the largest first. A group of one is
    a solo run."""
    buckets: dict[str | None, list[tuple[str, DistillConfig]]] = defaultdict(list)
    singles: list[list[str]] = []
    for run_id, cfg in items:
        key = lockstep_key(cfg)
        if key is None:
            singles.append([run_id])
        else:
            buckets[key].append((run_id, cfg))
    groups: list[list[str]] = []
    for members in buckets.values():
        try:
            size = cap(members[0][1]) if cap else max_group_size(members[0][1], workers)
        except Exception:  # the runs will report their own errors
            size = 1
        ids = [m[0] for m in members]
        groups += _chunks(ids, math.ceil(len(ids) / max(1, size)))
    while True:
        groups.sort(key=len, reverse=True)
        if not groups or len(groups[0]) < 2:
            break
        halved = groups[1:] + _chunks(groups[0], 2)
        now = [len(g) for g in groups + singles]
        if makespan([len(g) for g in halved + singles], workers) >= makespan(now, workers):
            break
        groups = halved
    return sorted(groups + singles, key=len, reverse=True)


# A lockstep step of R runs costs about (STEP_OVERHEAD + R) run-steps: a batch-1 step is
# bound by dispatch up to a few runs, by arithmetic beyond (paper-v1, one thread, the
# front end in PyTorch's kernels: 2.21 ms at R = 8, 6.05 ms at R = 32, so 0.16 ms per
# run + 0.93 ms; with the native kernel 1.29 and 3.05 ms, 0.07 ms per run + 0.70 ms,
# about 9; the paper-v1 grid's plan is the same with 6 or 9; docs/performance.md).
STEP_OVERHEAD = 6


def makespan(sizes: Sequence[int], workers: int) -> float:
    """Estimated wall time, in run-steps, of groups of ``sizes`` runs on ``workers``
    workers, each group given to the least loaded worker, the largest first."""
    loads = [0.0] * max(1, workers)
    for n in sorted(sizes, reverse=True):
        i = loads.index(min(loads))
        loads[i] += n + STEP_OVERHEAD
    return max(loads)


def _chunks(ids: list[str], n: int) -> list[list[str]]:
    """``ids`` in ``n`` consecutive chunks whose sizes differ by at most one."""
    q, extra = divmod(len(ids), n)
    out, start = [], 0
    for i in range(n):
        end = start + q + (1 if i < extra else 0)
        out.append(ids[start:end])
        start = end
    return out


def run_lockstep(cfgs: Sequence[DistillConfig], out_dirs: Sequence[str | Path | None],
                 max_group: int | None = None) -> list[Outcome]:
    """Train every run ``cfgs[i]`` into ``out_dirs[i]``, those that can share a step
    in lockstep; returns per run what ``run_distill`` returns, or the exception that
    run raised (a solo run would have raised the same). A run already finished
    (``result.json`` written with its last epoch) is read back and not trained again;
    an interrupted one resumes after its last complete epoch.

    ``max_group``: runs per group at most (default: what fits in memory).
    """
    if len(cfgs) != len(out_dirs):
        raise ValueError("one output directory per config")
    outcomes: list[Outcome] = [None] * len(cfgs)
    preps: dict[int, Prepared] = {}
    for i, (cfg, out) in enumerate(zip(cfgs, out_dirs, strict=True)):
        try:
            preps[i] = prepare(cfg, out)
        except Exception as exc:  # what the solo run raises before training
            outcomes[i] = exc
    buckets: dict[str, list[int]] = defaultdict(list)
    solo: list[int] = []
    for i, prep in preps.items():
        key = _compat_key(prep)
        (solo.append(i) if key is None else buckets[key].append(i))
    for members in buckets.values():
        size = max_group or _fitting(preps[members[0]], len(members))
        for start in range(0, len(members), size):
            chunk = members[start:start + size]
            solo += _lockstep(chunk, preps, outcomes)
    for i in solo:
        outcomes[i] = _solo(preps[i])
    return outcomes


def _fitting(prep: Prepared, wanted: int) -> int:
    model = prep.model
    image_shape = tuple(prep.train.images.shape[1:])
    k = len(getattr(model, "class_outputs", []) or []) or 1
    per_run = run_bytes(model, image_shape, k, len(prep.train.labels),
                        len(prep.val.labels) + (len(prep.test.labels) if prep.test else 0),
                        prep.train_cfg.batch_size)
    device = resolve_device(prep.train_cfg.device)
    budget = MEMORY_FRACTION * available_memory_bytes(device)
    return int(max(1, min(wanted, MAX_GROUP, budget // per_run)))


def _solo(prep: Prepared) -> Outcome:
    """The run trained by ``run_distill`` (resuming from its last checkpoint)."""
    try:
        return run_distill(prep.cfg, prep.out_dir)
    except Exception as exc:
        return exc


def _lockstep(members: list[int], preps: dict[int, Prepared], outcomes: list[Outcome]
              ) -> list[int]:
    """Train ``members`` in lockstep; returns those left for a solo run."""
    cfg0 = preps[members[0]].train_cfg
    seed_everything(cfg0.seed, cfg0.deterministic)  # what fit sets globally
    runs: dict[int, RunState] = {}
    for i in members:
        run = init_run(preps[i])
        if run.error is not None:
            outcomes[i] = run.error
        else:
            runs[i] = run
    by_start: dict[int, list[int]] = defaultdict(list)
    for i, run in runs.items():
        by_start[run.progress.epoch + 1].append(i)
    left: list[int] = []
    for start, ids in sorted(by_start.items()):
        group = [runs[i] for i in ids]
        if start <= cfg0.epochs:
            try:
                train_group(group, start)
            except Exception as exc:  # Unsupported, or anything the twin cannot run
                log.info(f"lockstep: {len(group)} run(s) trained solo instead "
                         f"({type(exc).__name__}: {exc})")
                left += [i for i, run in zip(ids, group, strict=True) if run.error is None]
                for i, run in zip(ids, group, strict=True):
                    if run.error is not None:
                        outcomes[i] = run.error
                continue
        for i, run in zip(ids, group, strict=True):
            if run.error is not None:
                outcomes[i] = run.error
                continue
            try:
                finish_run(run)
            except Exception as exc:
                outcomes[i] = exc
                continue
            outcomes[i] = (run.model, run.result, preps[i].run_meta)
    return left


def describe_groups(groups: Sequence[Sequence[str]]) -> str:
    """"6 lockstep group(s) of 12..12 runs, 0 solo"."""
    sizes = [len(g) for g in groups if len(g) > 1]
    solo = sum(1 for g in groups if len(g) == 1)
    if not sizes:
        return f"{solo} solo"
    return f"{len(sizes)} lockstep group(s) of {min(sizes)}..{max(sizes)} runs, {solo} solo"

