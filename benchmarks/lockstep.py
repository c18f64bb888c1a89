"""Benchmark: lockstep training (qdistill.lockstep) against one run at a time (not a test).

The parts, printed side by side:

- ``throughput``: training steps of the paper-v1 student (MNIST 0-5, 3 qubits, the
  notebooks' head, batch 1, 3 of 4 runs distilled with the paper's loss, as in the
  grid) for R = 1, 8, 32, 72, 256 runs in one lockstep group, in student-steps per
  second on one thread, beside a solo run's steps (``fit``'s inner loop). Evaluation is
  not timed here.
- ``native``: the same step with the front end through the native kernel
  (``qdistill.lockstep.native``) and through the per-layer proxies, alternating,
  R = 1, 8, 24, 72.
- ``design``: the same step with the alternative design, ``torch.func`` (stack_module_state
  + functional_call + vmap, per-run dropout masks passed in), R = 1, 12, 72.
- ``compile`` (only when asked): the lockstep step at R = 24 with its forward + loss
  eager and under ``torch.compile``, alternating.
- ``grid``: the paper-v1 student grid (``qdistill reproduce paper-v1``'s 72 paper-v1
  runs, teachers cached: trained first if missing, not timed) with ``--lockstep on``
  and ``--lockstep off``, wall time and peak memory (RSS of this process and its
  workers, summed, sampled every 0.2 s), into fresh temporary directories; then the
  per-run test accuracies of the two compared.

    python benchmarks/lockstep.py                      # design, throughput, grid
    python benchmarks/lockstep.py throughput --runs 1,8,32
    python benchmarks/lockstep.py grid --teachers none,lenet --workers 2
    python benchmarks/lockstep.py grid --shots --skip-solo
    python benchmarks/lockstep.py grid --teachers none,lenet --seeds 6 --skip-solo  # 72 runs
    python benchmarks/lockstep.py compile              # the step under torch.compile
    python benchmarks/lockstep.py native               # native kernel vs proxies
    QDISTILL_NATIVE=0 python benchmarks/lockstep.py grid ...  # the grid without it

Run it on an otherwise idle machine (batch-1 training is sensitive to any other load).
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch

from qdistill.cli.commands import parse_teacher_epochs
from qdistill.config import DataConfig, StudentConfig, TrainConfig
from qdistill.experiments.executors import usable_cpus
from qdistill.experiments.grids import GridOptions, paper_v1_grid
from qdistill.experiments.reproduce import run_grid
from qdistill.experiments.runner import prepare_teachers
from qdistill.lockstep import native
from qdistill.lockstep.loop import Lockstep, init_run
from qdistill.lockstep.prepare import Prepared
from qdistill.losses import KDLoss
from qdistill.students import build_student
from qdistill.training.evaluation import as_float
from qdistill.training.fit import cpu_threads, cross_entropy, make_adam, seed_everything
from qdistill.training.tasks import build_task

PAPER_RUNS = "*_q?_[nlae]*"  # the paper's 72 runs: every paper-v1 student


# ------------------------------------------------------------------ throughput
def _prepared(r: int, task, soft: torch.Tensor, shots: int | None) -> Prepared:
    seed_everything(r)
    student = StudentConfig(name="paper-v1", qubits=3, head="paper", angles="pi",
                            shots=shots)
    model = build_student(student, task.num_classes, task.image_shape)
    teacher = r % 4 != 0  # as the grid: one run in four without a teacher
    loss = KDLoss(3.0, 0.9, "paper", model.class_outputs) if teacher else cross_entropy
    cfg = TrainConfig(epochs=1, batch_size=1, seed=r, device="cpu")
    return Prepared(cfg=None, out_dir=None, model=model, train=task.train, val=task.val,
                    test=task.test, train_cfg=cfg, loss_fn=loss,
                    soft_targets=soft if teacher else None, run_meta={}, desc="bench")


def _solo_steps_per_s(prep: Prepared, steps: int) -> float:
    """``fit``'s inner loop for one run (batch 1, one thread)."""
    model, cfg = prep.model, prep.train_cfg
    opt = make_adam(model, cfg)
    x_train, y_train = prep.train.images, prep.train.labels
    order = torch.randperm(len(y_train), generator=torch.Generator().manual_seed(0))
    soft = prep.soft_targets
    model.train()

    def run(n: int) -> None:
        for s in range(n):
            idx = order[s:s + 1]
            x, y = as_float(x_train[idx]), y_train[idx]
            logits = model(x)
            loss = prep.loss_fn(logits, y, soft[idx] if soft is not None else None)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    run(50)
    t = time.perf_counter()
    run(steps)
    return steps / (time.perf_counter() - t)


def _paper_v1_task() -> tuple[Any, torch.Tensor]:
    """The paper-v1 student task of MNIST 0-5 and fixed random soft targets for it."""
    task = build_task(DataConfig(dataset="mnist", classes="0-5", train_per_class=150,
                                 test_per_class=150, val_per_class=50), 0)
    soft = torch.randn(len(task.train.labels), task.num_classes,
                       generator=torch.Generator().manual_seed(0)) * 3
    return task, soft


def throughput(runs: list[int], steps: int, shots: int | None) -> list[tuple]:
    task, soft = _paper_v1_task()
    rows = []
    with cpu_threads(1):
        solo = _solo_steps_per_s(_prepared(1, task, soft, shots), steps)
        rows.append(("solo (fit)", 1, 1e3 / solo, solo))
        for R in runs:
            group = Lockstep([init_run(_prepared(r, task, soft, shots))
                              for r in range(R)])
            n = max(20, min(steps, int(steps * 8 / R)))
            group.train_epoch(1, max_steps=10)  # warm-up
            t = time.perf_counter()
            group.train_epoch(2, max_steps=n)
            dt = (time.perf_counter() - t) / n
            rows.append(("lockstep", R, 1e3 * dt, R / dt))
            print(f"  R={R}: {1e3 * dt:.2f} ms per step, {R / dt:,.0f} student-steps/s",
                  flush=True)
    return rows


# ------------------------------------------------------------------ native
def native_ab(runs: list[int], steps: int, segments: int = 3) -> list[tuple]:
    """The lockstep step (one thread) with the front end through the native kernel and
    through the per-layer proxies (``QDISTILL_NATIVE=0`` while that twin is built), in
    alternating segments of ``steps`` steps (this machine's speed drifts: only
    interleaved timings compare)."""
    task, soft = _paper_v1_task()
    rows = []
    with cpu_threads(1):
        for R in runs:
            groups = {}
            before = os.environ.get(native.ENV_SWITCH)
            for kernel in ("native", "proxies"):
                os.environ[native.ENV_SWITCH] = "1" if kernel == "native" else "0"
                try:
                    groups[kernel] = Lockstep([init_run(_prepared(r, task, soft, None))
                                               for r in range(R)])
                finally:
                    if before is None:
                        os.environ.pop(native.ENV_SWITCH)
                    else:
                        os.environ[native.ENV_SWITCH] = before
                groups[kernel].train_epoch(1, max_steps=10)  # warm-up
            n = max(20, min(steps, int(steps * 8 / R)))
            times: dict[str, list[float]] = {k: [] for k in groups}
            for _ in range(segments):
                for kernel, group in groups.items():
                    t = time.perf_counter()
                    group.train_epoch(2, max_steps=n)
                    times[kernel].append(1e3 * (time.perf_counter() - t) / n)
            a, b = statistics.median(times["native"]), statistics.median(times["proxies"])
            rows.append((R, a, b))
            print(f"  R={R}: native {a:.2f} ms, proxies {b:.2f} ms per step ({b / a:.2f}x)",
                  flush=True)
    return rows


# ------------------------------------------------------------------ compile
def compiled(R: int, steps: int, segments: int = 3) -> list[tuple]:
    """The lockstep step (R runs, one thread) with its forward + loss eager and under
    ``torch.compile`` (inductor, a C++ compiler on PATH), in alternating segments of
    ``steps`` steps; the first compiled steps (compilation) are timed apart."""
    from qdistill.lockstep.proxies import fold

    task, soft = _paper_v1_task()
    rows = []
    with cpu_threads(1):
        group = Lockstep([init_run(_prepared(r, task, soft, None)) for r in range(R)])
        group.twin.train()

        def forward_loss(x, y, s):
            return group.loss_fn(group.twin(fold(x)), y, s).sum()

        fns = {"eager": forward_loss, "compiled": torch.compile(forward_loss, dynamic=False)}
        pick = torch.Generator().manual_seed(0)
        task_rows, run_rows = group.task[:, None], group.arange[:, None]

        def run(fn, n: int) -> float:
            t = time.perf_counter()
            for _ in range(n):
                idx = torch.randint(0, group.n_train, (R, 1), generator=pick)
                loss = fn(as_float(group.x[task_rows, idx]), group.y[task_rows, idx],
                          group.soft[run_rows, idx])
                group.adam.zero_grad()
                loss.backward()
                group.adam.step()
            return time.perf_counter() - t

        rows.append(("compiled: first 3 steps (s)", R, run(fns["compiled"], 3)))
        for _ in range(segments):
            for name, fn in fns.items():
                ms = 1e3 * run(fn, steps) / steps
                rows.append((f"{name} (ms/step)", R, ms))
                print(f"  {name}: {ms:.2f} ms per step", flush=True)
    return rows


# ------------------------------------------------------------------ design
def _vmap_step(preps: list[Prepared]):
    """The alternative design: torch.func.stack_module_state + functional_call + vmap
    over the runs' students (dropout layers replaced by per-run masks passed in, the
    loss vmapped too), autograd through the vmapped forward, the same fused Adam."""
    import copy

    import torch.nn.functional as F
    from torch import nn
    from torch.func import functional_call, stack_module_state, vmap

    models = [p.model for p in preps]
    params, buffers = stack_module_state(models)
    for t in params.values():
        t.requires_grad_(True)
    base = copy.deepcopy(models[0])

    class Mask(nn.Module):
        mask: torch.Tensor

        def forward(self, x):
            return x * self.mask

    drops = []
    for name, mod in list(base.front.net.named_children()):
        if isinstance(mod, nn.Dropout | nn.Dropout2d):
            base.front.net._modules[name] = Mask()
            drops.append((mod.p, isinstance(mod, nn.Dropout2d), base.front.net._modules[name]))
    base = base.to("meta")

    def one(p, b, x, y, soft, m1, m2, hard, coef):
        drops[0][2].mask, drops[1][2].mask = m1, m2
        out = functional_call(base, (p, b), (x,))
        ce = F.cross_entropy(out, y)
        kl = F.kl_div(F.log_softmax(out[:, :6] / 3, 1), F.log_softmax(soft / 3, 1),
                      reduction="batchmean", log_target=True)
        return hard * ce + coef * kl

    step_fn = vmap(one)
    names = list(params)
    plist = [params[n] for n in names]
    ea = [torch.zeros_like(t) for t in plist]
    es = [torch.zeros_like(t) for t in plist]
    st = [torch.zeros(()) for _ in plist]
    gens = [torch.Generator().manual_seed(r) for r in range(len(preps))]
    x_train = preps[0].train.images
    R = len(preps)
    teacher = torch.tensor([p.soft_targets is not None for p in preps])
    hard = torch.ones(R)
    coef = torch.where(teacher, 0.9 * 9.0, 0.0)
    zeros = torch.zeros(len(x_train), len(models[0].class_outputs))
    soft = torch.stack([p.soft_targets if p.soft_targets is not None else zeros
                        for p in preps])

    def step(s: int) -> None:
        idx = torch.full((R, 1), s % len(x_train))
        x = as_float(x_train[idx])
        y = preps[0].train.labels[idx]
        m1 = torch.stack([torch.empty(1, 20, 1, 1).bernoulli_(0.5, generator=g).div_(0.5)
                          for g in gens])
        m2 = torch.stack([torch.empty(1, 50).bernoulli_(0.5, generator=g).div_(0.5)
                          for g in gens])
        losses = step_fn(params, buffers, x, y, soft[torch.arange(R)[:, None], idx], m1, m2,
                         hard, coef)
        for t in plist:
            t.grad = None
        losses.sum().backward()
        with torch.no_grad():
            torch._foreach_add_(st, 1)
            torch._fused_adam_(plist, [t.grad for t in plist], ea, es, [], st,
                               amsgrad=False, lr=1e-3, beta1=0.9, beta2=0.999,
                               weight_decay=0.0, eps=1e-8, maximize=False)

    return step


def design(runs: list[int], steps: int) -> list[tuple]:
    """ms per lockstep step: the run-batched twin (qdistill.lockstep) vs vmap."""
    task, soft = _paper_v1_task()
    rows = []
    with cpu_threads(1):
        for R in runs:
            n = max(20, min(steps, int(steps * 8 / R)))
            group = Lockstep([init_run(_prepared(r, task, soft, None))
                              for r in range(R)])
            group.train_epoch(1, max_steps=10)
            t = time.perf_counter()
            group.train_epoch(2, max_steps=n)
            twin_ms = 1e3 * (time.perf_counter() - t) / n
            step = _vmap_step([_prepared(r, task, soft, None) for r in range(R)])
            for s in range(10):
                step(s)
            t = time.perf_counter()
            for s in range(n):
                step(s)
            vmap_ms = 1e3 * (time.perf_counter() - t) / n
            rows.append((R, twin_ms, vmap_ms))
            print(f"  R={R}: run-batched modules {twin_ms:.2f} ms, vmap {vmap_ms:.2f} ms per step",
                  flush=True)
    return rows


# ------------------------------------------------------------------ grid
class PeakRSS:
    """Peak of the summed RSS of this process and its descendants (sampled)."""

    def __init__(self, every: float = 0.2):
        self.every, self.peak, self._stop = every, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _tree_rss(os.getpid()))
            self._stop.wait(self.every)


def _tree_rss(root: int) -> int:
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            pages = int(Path(f"/proc/{entry}/statm").read_text().split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
        rss[int(entry)] = pages * os.sysconf("SC_PAGE_SIZE")
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo += children.get(pid, [])
    return total


def grid_runs(opt: GridOptions) -> list:
    """The paper-v1 runs ``opt.only`` selects, every teacher they need cached (trained
    now if missing: outside any timing)."""
    runs = [r for r in paper_v1_grid(opt) if fnmatch.fnmatchcase(r.run_id, opt.only)]
    prepare_teachers(runs)
    return runs


def grid(opt: GridOptions, workers: int, skip_solo: bool) -> list[tuple]:
    runs = grid_runs(opt)
    out = []
    results = {}
    for lockstep in ((True,) if skip_solo else (True, False)):
        with tempfile.TemporaryDirectory() as tmp, PeakRSS() as mem:
            t = time.perf_counter()
            rows = run_grid("paper-v1", dataclasses.replace(opt, lockstep=lockstep),
                            Path(tmp), workers=workers)
            wall = time.perf_counter() - t
        results[lockstep] = {r["run_id"]: r for r in rows}
        out.append(("on" if lockstep else "off", len(runs), wall, mem.peak / 2**20))
        print(f"  --lockstep {'on' if lockstep else 'off'}: {len(runs)} runs in {wall:.1f} s, "
              f"peak RSS {mem.peak / 2**20:,.0f} MiB", flush=True)
    if len(results) == 2:
        on, off = results[True], results[False]
        same = sum(on[k]["test_acc"] == off[k]["test_acc"] for k in on)
        epochs = sum(on[k]["best_epoch"] == off[k]["best_epoch"] for k in on)
        diff = max(abs(on[k]["test_acc"] - off[k]["test_acc"]) for k in on)
        print(f"  same test accuracy in {same}/{len(on)} runs, same selected epoch in "
              f"{epochs}/{len(on)} (largest difference {100 * diff:.2f} points)")
        for what, rows in (("on", on), ("off", off)):  # the same experiment, two draws
            cells: dict[tuple, list[float]] = {}
            for r in rows.values():
                cells.setdefault((r["setting"], r["teacher"]), []).append(100 * r["test_acc"])
            print(f"  --lockstep {what}: " + "; ".join(
                f"{s.split(',')[0]} {s.split(', ')[1]} {t} "
                f"{statistics.mean(v):.1f}±{statistics.stdev(v) if len(v) > 1 else 0:.1f}"
                for (s, t), v in sorted(cells.items())))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("part", nargs="?",
                    choices=["all", "throughput", "native", "design", "grid", "compile"],
                    default="all")
    ap.add_argument("--runs", default="1,8,32,72,256", help="throughput: group sizes R")
    ap.add_argument("--steps", type=int, default=400, help="throughput: steps timed at R<=8")
    ap.add_argument("--workers", type=int, default=usable_cpus())
    ap.add_argument("--teachers", default="none,lenet,alexnet,ensemble")
    ap.add_argument("--teacher-epochs", default="lenet=10,alexnet=1,ensemble=1")
    ap.add_argument("--seeds", type=int, default=None,
                    help="grid: seeds per cell (default 3, the paper's); --teachers "
                         "none,lenet --seeds 6 is the 72-run grid's student work where "
                         "AlexNet and Ensemble are not cached (a student's cost does not "
                         "depend on its teacher)")
    ap.add_argument("--only", default=PAPER_RUNS, help=f"grid: run-id glob ({PAPER_RUNS!r})")
    ap.add_argument("--head", default="paper", help="grid: paper-v1 head (grid_time.py's)")
    ap.add_argument("--shots", action="store_true", help="the paper's shots (both parts)")
    ap.add_argument("--skip-solo", action="store_true", help="grid: lockstep only")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {usable_cpus()} usable CPU(s)")
    tp = gr = de = co = na = []
    if args.part == "compile":  # not in "all": compiling takes ~30 s
        print("compile (paper-v1 lockstep step, R = 24, one thread):")
        co = compiled(24, 300)
    if args.part in ("all", "design"):
        print("design (paper-v1 training step, one thread):")
        de = design([1, 12, 72], args.steps)
    if args.part in ("all", "native"):
        print("native kernel against the per-layer proxies (paper-v1 step, one thread):")
        na = native_ab([1, 8, 24, 72], args.steps)
    if args.part in ("all", "throughput"):
        print("throughput (paper-v1, batch 1, one thread):")
        tp = throughput([int(r) for r in args.runs.split(",")], args.steps,
                        5000 if args.shots else None)
    if args.part in ("all", "grid"):
        opt = GridOptions(teacher_epochs=parse_teacher_epochs(args.teacher_epochs),
                          teachers=tuple(args.teachers.split(",")), only=args.only,
                          shots=args.shots, head=args.head, seeds=args.seeds)
        print(f"grid (paper-v1{', shots' if args.shots else ''}, teachers "
              f"{args.teachers}, {args.workers} worker(s)):")
        gr = grid(opt, args.workers, args.skip_solo)
    if de:
        print("\n| runs R | run-batched modules (ms/step) | vmap (ms/step) |\n|---|---|---|")
        for R, a, b in de:
            print(f"| {R} | {a:.2f} | {b:.2f} |")
    if tp:
        print("\n| runs R | ms per step | student-steps/s |\n|---|---|---|")
        for what, R, ms, rate in tp:
            print(f"| {what if what != 'lockstep' else R} | {ms:.2f} | {rate:,.0f} |")
    if na:
        print("\n| runs R | native kernel (ms/step) | per-layer proxies (ms/step) | ratio |"
              "\n|---|---|---|---|")
        for R, a, b in na:
            print(f"| {R} | {a:.2f} | {b:.2f} | {b / a:.2f}x |")
    for what, R, value in co:
        print(f"| {what} | R = {R} | {value:.2f} |")
    if gr:
        print("\n| --lockstep | runs | wall time | peak memory |\n|---|---|---|---|")
        for what, n, wall, mib in gr:
            print(f"| {what} | {n} | {wall / 60:.1f} min ({wall:.0f} s) | {mib:,.0f} MiB |")


if __name__ == "__main__":
    main()
