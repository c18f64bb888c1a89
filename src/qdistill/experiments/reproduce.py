"""Reproduce the paper's grids, with seeds, validation-based selection and error bars.

    qdistill reproduce paper-v1 --quick          # < 5 min on 2 cores (the README's demo)
    qdistill reproduce paper-v1                  # the full v1 grid -> results/paper-v1/
    qdistill reproduce paper-v2 --quick
    qdistill reproduce paper-v1 --executor ray   # each run a Ray task (executors.py)

The grids are defined in grids.py, run (resumably, on a pool or Ray) by runner.py; this
module checks the options, runs a grid and writes its report (runs.csv, table.md and
the figures) against the paper's numbers.
"""

from __future__ import annotations

import fnmatch
import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import to_dict
from ..errors import QdistillError, unknown_name
from ..reporting import tables as report
from ..reporting.palette import teacher_and_epochs
from ..students import V1_ANGLES, V1_HEADS
from . import kd_figures, paper
from .grids import GRIDS, PAPER_TABLES, V1_TEACHERS, GridOptions
from .runner import run_all


def run_grid(grid: str, opt: GridOptions, out: Path, workers: int = 1,
             executor: str = "local",
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
    runs = [r for r in GRIDS[grid](opt) if not opt.only or fnmatch.fnmatchcase(r.run_id, opt.only)]
    if not runs:
        raise QdistillError(f"no run of {grid} matches --only {opt.only!r}")
    report = REPORTS.get(grid)
    return run_all(runs, out, label=grid, workers=workers, executor=executor,
                   address=address, device=opt.device, lockstep=opt.lockstep,
                   report=lambda rows, seconds: report(rows, out, opt, seconds) if report
                   else write_report(grid, rows, out, opt, seconds))


# A grid's own report, where it is not the paper grids' (write_report below).
REPORTS: dict[str, Callable[[list[dict[str, Any]], Path, GridOptions, float], str]] = {
    "kd-study": kd_figures.write_report,
}


def write_report(grid: str, rows: list[dict[str, Any]], out: Path, opt: GridOptions,
                 seconds: float) -> str:
    """runs.csv, table.md, accuracy.png, curves.png and gains.png in ``out``; returns the
    table text."""
    # Rows in the grid's own order (dataset, setting, student, teacher, seed), whatever
    # order the runs finished in; rows of other settings go last.
    order = {r.run_id: i for i, r in enumerate(GRIDS[grid](GridOptions()))}
    rows = sorted(rows, key=lambda r: (order.get(r["run_id"], len(order)), r["run_id"]))
    rows, paper_table = by_teacher_epochs(rows, PAPER_TABLES[grid]())
    teachers = sorted({r["teacher"] for r in rows}, key=_teacher_order)
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


def by_teacher_epochs(rows: list[dict[str, Any]], paper_table: dict[str, dict[str, float]]
                      ) -> tuple[list[dict[str, Any]], dict[str, dict[str, float]]]:
    """Where one teacher appears with different training epochs (e.g. the same grid
    run with 1- and 10-epoch AlexNet teachers), its rows are relabelled
    ``"<teacher>-te<epochs>"`` so that no cell, gain or curve mixes the two; the paper's
    number (its teachers: 10 epochs) goes to the 10-epoch label. Rows and table are
    copies; the runs' own files keep the teacher's name."""
    epochs: dict[str, set[Any]] = defaultdict(set)
    for r in rows:
        if r["teacher"] != "none":
            epochs[r["teacher"]].add(r.get("teacher_epochs"))
    mixed = {t for t, e in epochs.items() if len(e) > 1}
    if not mixed:
        return rows, paper_table
    out = [dict(r, teacher=f"{r['teacher']}-te{r.get('teacher_epochs')}")
           if r["teacher"] in mixed else r for r in rows]
    table = {s: {(f"{t}-te10" if t in mixed else t): v for t, v in cells.items()}
             for s, cells in paper_table.items()}
    return out, table


def _teacher_order(label: str) -> tuple[int, str, int]:
    """The paper's teachers in their order (each at its training lengths, shortest
    first), then the others by name."""
    base, epochs = teacher_and_epochs(label)
    known = V1_TEACHERS.index(base) if base in V1_TEACHERS else len(V1_TEACHERS)
    return known, base, epochs


def _teacher_lines(rows: list[dict[str, Any]]) -> str:
    seen = {}
    for r in rows:
        if r["teacher"] != "none":
            seen[(r["dataset"], r["classes"], r["teacher"])] = r
    lines = ["## Teachers (test accuracy %, selected on validation)", "",
             "| dataset, classes | teacher | epochs | ours | paper |", "|---|---|---|---|---|"]
    for (ds, cl, t), r in sorted(seen.items()):
        p = paper.V1_TEACHERS.get((ds, cl), {}).get(teacher_and_epochs(t)[0])  # 10 epochs
        source = " (its committed record: soft targets without the weights)" \
            if r.get("teacher_recorded") else ""
        lines.append(f"| {ds} {cl or 'all'} | {t}{source} | {r['teacher_epochs']} | "
                     f"{100 * r['teacher_test_acc']:.2f} | {p if p is not None else ''} |")
    return "\n".join(lines)
