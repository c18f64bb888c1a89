"""Reproduce the paper's grids, with seeds, validation-based selection and error bars.

    qdistill reproduce paper-v1 --quick          # < 5 min on 2 cores (the README's demo)
    qdistill reproduce paper-v1                  # the full v1 grid -> results/paper-v1/
    qdistill reproduce paper-v2 --quick
    qdistill reproduce paper-v1 --executor ray   # each run a Ray task (executors.py)

Each run lives in ``OUT/runs/<run_id>/``; a run with a ``result.json`` is done and is
not redone, and an interrupted run resumes after its last complete epoch. Teachers are
trained first, one at a time (cached by config), then the students run on a pool of
local processes or as Ray tasks. ``OUT/.lock`` keeps a second process off the same directory.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
import time
import traceback
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import paper, report
from .checkpoint import atomic_write_json, check_writable_dir
from .config import (
    DataConfig,
    DistillConfig,
    KDConfig,
    StudentConfig,
    TrainConfig,
    from_dict,
    to_dict,
)
from .errors import QdistillError, unknown_name
from .executors import make_executor, usable_cpus
from .lockstep import describe_groups, plan_groups
from .runs import build_task
from .student_runs import resolve_teacher, run_distill, teacher_config_for
from .students import V1_ANGLES, V1_HEADS, resolve_student
from .train import cpu_threads


@dataclass
class Run:
    run_id: str
    setting: str  # the table row this run belongs to
    cfg: DistillConfig


@dataclass
class GridOptions:
    quick: bool = False
    seeds: int | None = None  # default: 3 (full) / 2 (quick)
    epochs: int | None = None  # student epochs; default: the paper's 10
    teacher_epochs: dict[str, int] | None = None  # per teacher; default: the paper's 10
    teachers: tuple[str, ...] | None = None  # subset of none/lenet/alexnet/ensemble
    only: str | None = None  # keep the runs whose run_id matches this glob pattern
    shots: bool = False  # the paper's finite shots instead of exact probabilities
    # paper-v1 readout: logprob (distill's default too) or paper (the notebooks' sigmoid
    # head: results/paper-v1 names it with --head paper)
    head: str = "logprob"
    angles: str = "pi"  # paper-v1 angle range: pi (the paper's) or half-pi
    datasets: tuple[str, ...] | None = None
    device: str = "cpu"
    data_dir: str | None = None
    # runs that can share a step train together (lockstep/): faster, not bit-identical
    lockstep: bool = False


V1_SETTINGS = (("0-5", 3), ("0-7", 3), ("0-7", 4))
V1_TEACHERS = ("none", "lenet", "alexnet", "ensemble")
# The fully quantum row: without a teacher and with LeNet-5, the one teacher trained
# with the paper's full schedule in the committed grid (the best-trained teacher).
V1_QUANTUM_TEACHERS = ("none", "lenet")


def _v1_setting(ds: str, classes: str, q: int, student: str = "paper-v1") -> str:
    tag = "" if student == "paper-v1" else ", fully quantum (avgpool + amplitude, hea x4)"
    return f"{ds} {classes}, {q} qubits{tag}"


def paper_v1_grid(opt: GridOptions) -> list[Run]:
    """{MNIST, Fashion-MNIST} x {0-5/3q, 0-7/3q, 0-7/4q} x {none, LeNet, AlexNet,
    Ensemble} x seeds, the paper's student protocol; --quick: MNIST 0-5, 3 qubits,
    none vs LeNet, 2 seeds."""
    datasets = opt.datasets or (("mnist",) if opt.quick else ("mnist", "fashion-mnist"))
    settings = V1_SETTINGS[:1] if opt.quick else V1_SETTINGS
    teachers = opt.teachers or (("none", "lenet") if opt.quick else V1_TEACHERS)
    seeds = range(opt.seeds or (2 if opt.quick else 3))
    # Beyond the paper: a fully quantum student (every trainable parameter in the
    # circuit) with and without the LeNet teacher, as an extra row per setting.
    students = [("paper-v1", teachers)]
    if not opt.quick:
        students.append(("quantum", [t for t in teachers if t in V1_QUANTUM_TEACHERS]))
    runs = []
    for ds in datasets:
        for classes, q in settings:
            for student, student_teachers in students:
                for teacher in student_teachers:
                    t_epochs = (opt.teacher_epochs or {}).get(teacher, 10)
                    tag = "" if teacher == "none" else f"-te{t_epochs}"
                    name = "" if student == "paper-v1" else f"{student}_"
                    for seed in seeds:
                        runs.append(Run(f"{ds}_{classes}_q{q}_{name}{teacher}{tag}_s{seed}",
                                        _v1_setting(ds, classes, q, student),
                                        _v1_config(opt, ds, classes, q, student, teacher,
                                                   t_epochs, seed)))
    return runs


def _v1_config(opt: GridOptions, ds: str, classes: str, q: int, student: str,
               teacher: str, t_epochs: int, seed: int) -> DistillConfig:
    cfg = DistillConfig()
    cfg.data.dataset, cfg.data.classes = ds, classes
    cfg.data.data_dir = opt.data_dir
    shots = paper.V1_SHOTS[(classes, q)] if opt.shots else None
    if student == "paper-v1":
        cfg.student = StudentConfig(name="paper-v1", qubits=q, head=opt.head, shots=shots,
                                    angles=opt.angles)
    else:  # avg-pooled image -> amplitude encoding -> 4 HEA layers -> log(p + 0.01)
        cfg.student = StudentConfig(name="quantum", qubits=q, reduction="avgpool",
                                    encoding="amplitude", ansatz="hea", layers=4,
                                    shots=shots)
    # The paper's as-coded loss: CE + alpha T^2 KL, T = 3, alpha = 0.9.
    cfg.kd = KDConfig(teacher=teacher, temperature=3.0, alpha=0.9, variant="paper",
                      teacher_epochs=t_epochs)
    cfg.train.seed, cfg.train.device = seed, opt.device
    cfg.train.epochs = opt.epochs or 10
    return cfg


# paper-v2 rows: (student, reduction, encoding); the first is the paper's best.
V2_SETTINGS = (
    ("paper-v2", "fc", "amplitude"), ("paper-v2", "crop", "amplitude"),
    ("paper-v2", "pca", "amplitude"), ("paper-v2", "avgpool", "amplitude"),
    ("paper-v2", "maxpool", "amplitude"), ("paper-v2", "fc", "angle"),
    ("paper-v2", "fc", "dense"), ("quantum", "avgpool", "amplitude"),
)


def _v2_setting(ds: str, q: int, student: str, reduction: str, encoding: str) -> str:
    what = "fully quantum, hea x4" if student == "quantum" else f"{reduction} + {encoding}"
    return f"{ds}, {q} qubits, {what}"


def paper_v2_grid(opt: GridOptions) -> list[Run]:
    """10 classes, {MNIST, Fashion-MNIST (, CIFAR-10 with --data-dir)} x {4, 8 qubits} x
    the reduction ablation (amplitude encoding) and the encoding ablation (FC) x {no
    teacher, LeNet} x seeds; the whole training split (10% held out for selection),
    batch 128, Adam 1e-3, T = 3, alpha = 0.9 (Hinton loss). --quick: MNIST, 4 qubits,
    FC + amplitude, 1 seed, 2 epochs."""
    datasets = opt.datasets or (("mnist",) if opt.quick else ("mnist", "fashion-mnist"))
    qubit_counts = (4,) if opt.quick else (4, 8)
    settings = V2_SETTINGS[:1] if opt.quick else V2_SETTINGS
    teachers = opt.teachers or ("none", "lenet")
    seeds = range(opt.seeds or (1 if opt.quick else 3))
    runs = []
    for ds in datasets:
        for q in qubit_counts:
            for student, reduction, encoding in settings:
                for teacher in teachers:
                    t_epochs = (opt.teacher_epochs or {}).get(teacher, 10)
                    tag = "" if teacher == "none" else f"-te{t_epochs}"
                    for seed in seeds:
                        cfg = DistillConfig()
                        cfg.data = DataConfig(dataset=ds, classes=None, data_dir=opt.data_dir)
                        cfg.student = StudentConfig(name=student, qubits=q,
                                                    reduction=reduction, encoding=encoding,
                                                    ansatz="hea", layers=4)
                        cfg.kd = KDConfig(teacher=teacher, teacher_epochs=t_epochs)
                        cfg.train = TrainConfig(epochs=opt.epochs or (2 if opt.quick else 10),
                                                batch_size=128, seed=seed, device=opt.device)
                        runs.append(Run(
                            f"{ds}_q{q}_{student}-{reduction}-{encoding}_{teacher}{tag}_s{seed}",
                            _v2_setting(ds, q, student, reduction, encoding), cfg))
    return runs


def _v2_paper_table() -> dict[str, dict[str, float]]:
    # The paper's v2 numbers are its KD students (FC + amplitude), read off its figure.
    return {_v2_setting(ds, q, "paper-v2", "fc", "amplitude"): {"lenet": acc}
            for (ds, q), acc in paper.V2_STUDENTS.items()}


GRIDS: dict[str, Callable[[GridOptions], list[Run]]] = {
    "paper-v1": paper_v1_grid, "paper-v2": paper_v2_grid}
PAPER_TABLES: dict[str, Callable[[], dict[str, dict[str, float]]]] = {
    "paper-v1": lambda: {_v1_setting(ds, c, q): v for (ds, c, q), v in
                         paper.V1_STUDENTS.items()},
    "paper-v2": _v2_paper_table,
}


class DirLock:
    """An exclusive lock file: a second process on the same directory gets a clear error
    (a lock left by a dead process is taken over)."""

    def __init__(self, directory: Path):
        self.path = directory / ".lock"

    def __enter__(self) -> DirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    pid = int(self.path.read_text().strip() or 0)
                except (OSError, ValueError):
                    pid = 0
                if pid and _alive(pid):
                    raise QdistillError(
                        f"another qdistill process (pid {pid}) is writing to "
                        f"{self.path.parent}; wait for it or use another --out") from None
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            return self
        raise QdistillError(f"could not take the lock {self.path}")

    def __exit__(self, *exc: Any) -> None:
        self.path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _check_same_settings(run_dir: Path, cfg: DistillConfig) -> None:
    """A finished run is reused only if it ran with the settings asked for now."""
    done = json.loads((run_dir / "config.json").read_text()).get("config")
    # Compare through the dataclass with the student's options resolved, so a field added
    # to the config since that run (with its default), or an option recorded then that
    # does not apply to the student, does not make an old run look different.
    def resolved(c: DistillConfig) -> dict[str, Any]:
        return to_dict(dataclasses.replace(
            c, student=resolve_student(c.student, strict=False)))
    try:
        done = resolved(from_dict(DistillConfig, done))
    except QdistillError:
        pass  # written by another version: the dict comparison below says it differs
    if json.loads(json.dumps(done)) != json.loads(json.dumps(resolved(cfg))):
        raise QdistillError(
            f"{run_dir} is a finished run with other settings than this command's (e.g. "
            "another --head or --epochs); use another --out or delete it")


def _run_one(run_id: str, setting: str, cfg_dict: dict[str, Any], out: str,
             threads: int) -> dict[str, Any]:
    """One student run (in a worker process, or in this one with one worker): train,
    then return its CSV row. The thread count is restored afterwards."""
    cfg = from_dict(DistillConfig, cfg_dict)
    run_dir = Path(out) / "runs" / run_id
    t0 = time.perf_counter()
    with cpu_threads(threads):
        _, result, meta = run_distill(cfg, run_dir, log=None)
    return _row(run_id, setting, cfg, result, meta, time.perf_counter() - t0, run_dir)


def _run_group(group_id: str, members: list[tuple[str, str, dict[str, Any]]], out: str,
               threads: int) -> dict[str, Any]:
    """Student runs that can share a step, trained in lockstep (``qdistill.lockstep``;
    runs it cannot batch train solo) in one worker: their CSV rows, and a one-line
    error per failed run. Each run's seconds are the group's wall time / its size."""
    from .lockstep import run_lockstep

    cfgs = [from_dict(DistillConfig, d) for _, _, d in members]
    dirs = [Path(out) / "runs" / run_id for run_id, _, _ in members]
    t0 = time.perf_counter()
    with cpu_threads(threads):
        outcomes = run_lockstep(cfgs, dirs, log=None)
    seconds = (time.perf_counter() - t0) / len(members)
    rows, failures = [], []
    for (run_id, setting, _), cfg, run_dir, outcome in zip(members, cfgs, dirs, outcomes,
                                                           strict=True):
        if isinstance(outcome, BaseException):
            failures.append((run_id, _describe(outcome)))
        else:
            _, result, meta = outcome
            rows.append(_row(run_id, setting, cfg, result, meta, seconds, run_dir))
    return {"group": group_id, "rows": rows, "failures": failures}


def _row(run_id: str, setting: str, cfg: DistillConfig, result: Any, meta: dict[str, Any],
         seconds: float, run_dir: Path) -> dict[str, Any]:
    """A finished run's CSV row, also written to its ``row.json``."""
    teacher = meta["teacher"] or {}
    row = {
        "run_id": run_id, "setting": setting, "dataset": cfg.data.dataset,
        "classes": cfg.data.classes, "qubits": cfg.student.qubits,
        "student": cfg.student.name, "teacher": cfg.kd.teacher, "seed": cfg.train.seed,
        "test_acc": result.test_acc, "val_acc": result.val_acc,
        "best_epoch": result.best_epoch,
        "paper_metric_best_test_acc": result.paper_best_test_acc,
        "teacher_test_acc": teacher.get("test_acc"), "teacher_epochs": teacher.get("epochs"),
        "params_classical": meta["parameters"]["classical"],
        "params_quantum": meta["parameters"]["quantum"],
        "seconds": round(seconds, 2),
        "test_acc_per_epoch": [h["test_acc"] for h in result.history],
    }
    atomic_write_json(run_dir / "row.json", row)
    return row


def run_grid(grid: str, opt: GridOptions, out: Path, workers: int = 1,
             log: Callable[[str], None] = print, executor: str = "local",
             address: str | None = None) -> list[dict[str, Any]]:
    """Run (or resume) every run of ``grid`` into ``out`` and write the report.

    ``executor``: ``local`` (a pool of ``workers`` processes) or ``ray`` (one Ray task
    per run, on a local Ray instance or the cluster at ``address``; see executors.py).
    Each run gets ``usable cores // workers`` CPU threads either way.
    """
    if grid not in GRIDS:
        raise QdistillError(f"unknown grid {grid!r}; valid: {', '.join(GRIDS)}")
    # Checked here, before any teacher trains, not by every run failing on its own.
    if opt.head not in V1_HEADS:
        raise unknown_name("--head", opt.head, V1_HEADS)
    if opt.angles not in V1_ANGLES:
        raise unknown_name("--angles", opt.angles, V1_ANGLES)
    threads = max(1, usable_cpus() // max(1, workers))
    pool = make_executor(executor, workers, threads, opt.device, address)
    runs = [r for r in GRIDS[grid](opt) if not opt.only or fnmatch.fnmatchcase(r.run_id, opt.only)]
    if not runs:
        raise QdistillError(f"no run of {grid} matches --only {opt.only!r}")
    check_writable_dir(out)  # one line, not an OSError traceback, for a bad --out
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    with DirLock(out):
        # 1. Teachers, one at a time in this process (cached by config across runs).
        seen = set()
        for r in runs:
            key = json.dumps(to_dict(teacher_config_for(r.cfg)), sort_keys=True)
            if r.cfg.kd.teacher != "none" and key not in seen:
                seen.add(key)
                resolve_teacher(r.cfg, build_task(r.cfg.data, r.cfg.train.seed), log=log)
        # 2. Students: the finished ones are read back, the rest run on the pool.
        rows, todo = [], []
        for r in runs:
            run_dir = out / "runs" / r.run_id
            if (run_dir / "row.json").is_file():
                _check_same_settings(run_dir, r.cfg)
                rows.append(json.loads((run_dir / "row.json").read_text()))
            else:
                todo.append(r)
        # Runs that can share a step form lockstep groups (one task each; sized to fit
        # in memory, checked here before any starts); the others run one by one.
        groups = plan_groups([(r.run_id, r.cfg) for r in todo], workers) \
            if opt.lockstep else [[r.run_id] for r in todo]
        log(f"{grid}: {len(runs)} runs, {len(rows)} done, {len(todo)} to run "
            f"on {pool.describe()}"
            + (f", {describe_groups(groups)}" if opt.lockstep and todo else ""))
        failures = []
        by_id = {r.run_id: r for r in todo}
        i = 0

        def note(run_id: str, outcome: dict[str, Any] | str) -> None:
            nonlocal i
            i += 1
            if isinstance(outcome, str):
                failures.append((run_id, outcome))
                log(f"[{i}/{len(todo)}] {run_id}: failed: {outcome}")
            else:
                rows.append(outcome)
                log(f"[{i}/{len(todo)}] {run_id}: test {100 * outcome['test_acc']:.2f}%")

        tasks = [(f"group{n}", [(m, by_id[m].setting, to_dict(by_id[m].cfg)) for m in g],
                  str(out), threads) for n, g in enumerate(groups) if len(g) > 1]
        members = {t[0]: [m[0] for m in t[1]] for t in tasks}
        for name, outcome in pool.run(_run_group, tasks) if tasks else ():
            if isinstance(outcome, Exception):  # the whole task failed (e.g. its worker)
                for run_id in members[name]:
                    note(run_id, _describe(outcome))
                continue
            for row in outcome["rows"]:
                note(row["run_id"], row)
            for run_id, message in outcome["failures"]:
                note(run_id, message)
        args = [(g[0], by_id[g[0]].setting, to_dict(by_id[g[0]].cfg), str(out), threads)
                for g in groups if len(g) == 1]
        for run_id, outcome in pool.run(_run_one, args) if args else ():
            # keep the grid going; report at the end
            note(run_id, _describe(outcome) if isinstance(outcome, Exception) else outcome)
        # The report covers every finished run in the directory, so a grid completed
        # in parts (--teachers, --datasets subsets) ends with one table.
        done = {r["run_id"]: r for r in rows}
        for path in sorted((out / "runs").glob("*/row.json")):
            row = json.loads(path.read_text())
            done.setdefault(row["run_id"], row)
        if done:  # (none when every run failed: the error below says why)
            write_report(grid, list(done.values()), out, opt,
                         seconds=time.perf_counter() - t_start)
    if failures:
        raise QdistillError(f"{len(failures)} run(s) failed, e.g. {failures[0][0]}: "
                            f"{failures[0][1]}; rerun the same command to retry them")
    return rows


def _describe(exc: Exception) -> str:
    """A failed run's error in one line: a user error's message, else type and message."""
    if isinstance(exc, QdistillError):
        return str(exc)
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


def write_report(grid: str, rows: list[dict[str, Any]], out: Path, opt: GridOptions,
                 seconds: float) -> str:
    """runs.csv, table.md, accuracy.png, curves.png and gains.png in ``out``; returns the
    table text."""
    # Rows in the grid's own order (dataset, setting, student, teacher, seed), whatever
    # order the runs finished in; rows of other settings go last.
    order = {r.run_id: i for i, r in enumerate(GRIDS[grid](GridOptions()))}
    rows = sorted(rows, key=lambda r: (order.get(r["run_id"], len(order)), r["run_id"]))
    present = {r["teacher"] for r in rows}
    teachers = [t for t in V1_TEACHERS if t in present] + sorted(present - set(V1_TEACHERS))
    paper_table = PAPER_TABLES[grid]()
    report.write_csv(rows, out / "runs.csv")
    parts = [
        f"# {grid}{' (quick)' if opt.quick else ''}: student test accuracy %",
        "",
        "Test accuracy at the epoch selected on the validation split (carved from the "
        "training data), mean ± std over seeds; the paper's number (one run, best test "
        "accuracy over epochs) in brackets.",
        "",
        report.accuracy_table(rows, teachers, paper_table),
        "",
        "## KD gain (teacher minus no teacher, points, paired by seed, 95% CI)",
        "",
        report.gain_table(rows, teachers, paper_table),
        "",
        "## The paper's metric: best test accuracy over epochs (biased: selects on test)",
        "",
        report.accuracy_table(rows, teachers, paper_table, "paper_metric_best_test_acc"),
        "",
        _teacher_lines(rows),
        "",
        f"Options: {json.dumps(to_dict(opt))}. Wall time of this invocation: "
        f"{seconds / 60:.1f} min.",
    ]
    text = "\n".join(parts) + "\n"
    (out / "table.md").write_text(text)
    histories: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        histories[r["setting"]][r["teacher"]].append(r["test_acc_per_epoch"])
    report.plot_curves(histories, out / "curves.png")
    report.plot_accuracy(rows, teachers, paper_table, out / "accuracy.png")
    g = report.gains(rows, teachers)
    if g:
        report.plot_gains(g, paper_table, out / "gains.png")
    return text


def _teacher_lines(rows: list[dict[str, Any]]) -> str:
    seen = {}
    for r in rows:
        if r["teacher"] != "none":
            seen[(r["dataset"], r["classes"], r["teacher"])] = r
    lines = ["## Teachers (test accuracy %, selected on validation)", "",
             "| dataset, classes | teacher | epochs | ours | paper |", "|---|---|---|---|---|"]
    for (ds, cl, t), r in sorted(seen.items()):
        p = paper.V1_TEACHERS.get((ds, cl), {}).get(t)
        lines.append(f"| {ds} {cl or 'all'} | {t} | {r['teacher_epochs']} | "
                     f"{100 * r['teacher_test_acc']:.2f} | {p if p is not None else ''} |")
    return "\n".join(lines)
