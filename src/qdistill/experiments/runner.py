"""Run a list of student runs into one directory: teachers first, then the students on
a pool of processes or Ray, resumable, one CSV row per run.

Each run lives in ``OUT/runs/<run_id>/``; a run with a ``row.json`` is done and is not
redone (unless its settings differ: an error), and an interrupted run resumes after its
last complete epoch. Teachers are trained first, one at a time (cached by config), then
the students run; runs that can share a step may train together in lockstep
(``qdistill.lockstep``). ``OUT/.lock`` keeps a second process off the same directory.
Used by ``qdistill reproduce`` (experiments/reproduce.py) and ``qdistill sweep``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..config import DistillConfig, from_dict, to_dict
from ..distillation.run import resolve_teacher, run_distill, teacher_config_for
from ..errors import QdistillError
from ..lockstep import describe_groups, plan_groups
from ..logs import quiet
from ..students import resolve_student
from ..training.checkpoint import atomic_write_json, check_writable_dir
from ..training.fit import cpu_threads
from ..training.tasks import build_task
from .executors import make_executor, usable_cpus
from .plan import Run

log = logging.getLogger(__name__)


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
    with cpu_threads(threads), quiet():
        _, result, meta = run_distill(cfg, run_dir)
    return _row(run_id, setting, cfg, result, meta, time.perf_counter() - t0, run_dir)


def _run_group(group_id: str, members: list[tuple[str, str, dict[str, Any]]], out: str,
               threads: int) -> dict[str, Any]:
    """Student runs that can share a step, trained in lockstep (``qdistill.lockstep``;
    runs it cannot batch train solo) in one worker: their CSV rows, and a one-line
    error per failed run. Each run's seconds are the group's wall time / its size."""
    from ..lockstep import run_lockstep

    cfgs = [from_dict(DistillConfig, d) for _, _, d in members]
    dirs = [Path(out) / "runs" / run_id for run_id, _, _ in members]
    t0 = time.perf_counter()
    with cpu_threads(threads), quiet():
        outcomes = run_lockstep(cfgs, dirs)
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
        "teacher_recorded": teacher.get("recorded"),
        "params_classical": meta["parameters"]["classical"],
        "params_quantum": meta["parameters"]["quantum"],
        "seconds": round(seconds, 2),
        "test_acc_per_epoch": [h["test_acc"] for h in result.history],
        "val_acc_per_epoch": [h["val_acc"] for h in result.history],
    }
    atomic_write_json(run_dir / "row.json", row)
    return row


def prepare_teachers(runs: Sequence[Run]) -> None:
    """Train (or find cached) every distinct teacher ``runs`` need, one at a time in
    this process, before any student starts (the cache is keyed by teacher config)."""
    seen = set()
    for r in runs:
        key = json.dumps(to_dict(teacher_config_for(r.cfg)), sort_keys=True)
        if r.cfg.kd.teacher != "none" and key not in seen:
            seen.add(key)
            resolve_teacher(r.cfg, build_task(r.cfg.data, r.cfg.train.seed))


def run_all(runs: Sequence[Run], out: Path, *, label: str = "runs", workers: int = 1,
            executor: str = "local", address: str | None = None, device: str = "cpu",
            lockstep: bool = False,
            report: Callable[[list[dict[str, Any]], float], Any] | None = None,
            ) -> list[dict[str, Any]]:
    """Run (or resume) ``runs`` into ``out/runs/<run_id>/`` and return the rows of the
    runs of this call; ``report(rows, seconds)`` then gets every finished run in ``out``.

    ``executor``: ``local`` (a pool of ``workers`` processes) or ``ray`` (one Ray task
    per run, or per lockstep group, on a local Ray instance or the cluster at
    ``address``; see executors.py). Each worker gets ``usable cores // workers`` CPU
    threads. A failed run does not stop the others; the error at the end names it.
    """
    ids = [r.run_id for r in runs]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise QdistillError(f"two runs are named {dup!r}: run ids must be unique")
    threads = max(1, usable_cpus() // max(1, workers))
    pool = make_executor(executor, workers, threads, device, address)
    check_writable_dir(out)  # one line, not an OSError traceback, for a bad --out
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    with DirLock(out):
        # 1. Finished students are read back; the rest are to run.
        rows, todo = [], []
        for r in runs:
            run_dir = out / "runs" / r.run_id
            if (run_dir / "row.json").is_file():
                _check_same_settings(run_dir, r.cfg)
                rows.append(json.loads((run_dir / "row.json").read_text()))
            else:
                todo.append(r)
        # 2. Their teachers; a finished run's teacher is not needed (a fresh clone of a
        # committed grid would otherwise train its LeNet-5 teachers, ~2 min, for nothing).
        prepare_teachers(todo)
        # 3. Students on the pool.
        # Runs that can share a step form lockstep groups (one task each; sized to fit
        # in memory, checked here before any starts); the others run one by one.
        groups = plan_groups([(r.run_id, r.cfg) for r in todo], workers) \
            if lockstep else [[r.run_id] for r in todo]
        log.info(f"{label}: {len(runs)} runs, {len(rows)} done, {len(todo)} to run "
            f"on {pool.describe()}"
            + (f", {describe_groups(groups)}" if lockstep and todo else ""))
        failures = []
        by_id = {r.run_id: r for r in todo}
        i = 0

        def note(run_id: str, outcome: dict[str, Any] | str) -> None:
            nonlocal i
            i += 1
            if isinstance(outcome, str):
                failures.append((run_id, outcome))
                log.info(f"[{i}/{len(todo)}] {run_id}: failed: {outcome}")
            else:
                rows.append(outcome)
                log.info(f"[{i}/{len(todo)}] {run_id}: test {100 * outcome['test_acc']:.2f}%")

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
        if done and report is not None:  # (none when every run failed: see below)
            report(list(done.values()), time.perf_counter() - t_start)
    if failures:
        raise QdistillError(f"{len(failures)} run(s) failed, e.g. {failures[0][0]}: "
                            f"{failures[0][1]}; rerun the same command to retry them")
    return rows

def _describe(exc: Exception) -> str:
    """A failed run's error in one line: a user error's message, else type and message."""
    if isinstance(exc, QdistillError):
        return str(exc)
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()
