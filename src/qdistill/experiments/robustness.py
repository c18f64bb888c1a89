"""Test accuracy of trained students under finite shots and hardware noise, no retraining.

    qdistill evaluate --run runs/distill/a --run runs/distill/b --shots 100,1000,10000 \\
        --noise depolarizing=0.001 --noise depolarizing=0.01 --noise preset:ibm-heron \\
        --seeds 3 --out runs/robustness

    rows = robustness_rows(["runs/distill/a"], [100, 1000], ["depolarizing=0.01"], seeds=3)
    write_robustness(rows, "runs/robustness")   # robustness.csv / .md / .png

Every student is evaluated on its own test split (rebuilt from its config) exactly, with
each number of shots, under each noise model (exact probabilities, see
``quantum.noise``) and under each noise model with each number of shots. Settings with
randomness (shots, or noise by trajectories) run once per seed ``0..seeds-1`` (seed ``s``
seeds both the shot sampling and the trajectories); the others run once. A student
trained with noise in the loop (``student.noise``) is evaluated exactly in the
``exact`` row too: the table says what the circuit does, not how it was trained.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import MAX_SHOTS
from ..errors import QdistillError
from ..quantum.noise import METHODS, NoiseModel, noisy

log = logging.getLogger(__name__)

__all__ = ["CSV_FIELDS", "DEFAULT_NOISE", "DEFAULT_SHOTS", "parse_shots", "read_robustness",
           "robustness_rows", "robustness_table", "write_robustness"]

# What `qdistill reproduce --robustness` evaluates.
DEFAULT_SHOTS = (100, 1000, 10000)
DEFAULT_NOISE = ("depolarizing=0.001", "depolarizing=0.01", "preset:ibm-heron")

CSV_FIELDS = ["run", "setting_label", "group", "student", "teacher", "dataset", "classes",
              "qubits", "train_seed", "train_noise", "noise", "shots", "seed", "method",
              "test_acc", "n_test", "seconds", "run_dir"]


def parse_shots(spec: str | Sequence[int] | None) -> list[int]:
    """``"100,1000"`` -> ``[100, 1000]``; every entry must be an integer >= 1."""
    if spec is None or spec == "":
        return []
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    try:
        shots = [int(s) for s in items]  # "1e21" is not an integer: refused
    except ValueError:
        raise QdistillError(f"--shots {spec!r}: give integers 1..{MAX_SHOTS}, e.g. "
                            "100,1000,10000") from None
    if any(not 1 <= s <= MAX_SHOTS for s in shots):
        raise QdistillError(f"--shots {spec!r}: each must be 1..{MAX_SHOTS}")
    return shots


def _label(noise: str | None, shots: int | None) -> str:
    parts = ([noise] if noise else []) + ([f"shots={shots}"] if shots else [])
    return " + ".join(parts) or "exact"


def _test_split(meta: dict[str, Any]) -> tuple[Any, Any]:
    from ..training.tasks import task_of_run

    task = task_of_run(meta)
    return task.test.images, task.test.labels


def robustness_rows(
    run_dirs: Sequence[str | Path],
    shots_list: Sequence[int] = DEFAULT_SHOTS,
    noise_list: Sequence[str] = DEFAULT_NOISE,
    seeds: int = 3,
    method: str = "density",
    trajectories: int = 100,
    extra: Mapping[str, Mapping[str, Any]] | None = None,
    device: str = "cpu",
    test_limit: int | None = None,
) -> list[dict[str, Any]]:
    """One row per (run, setting, seed) with the test accuracy; see the module docstring.

    ``noise_list`` holds noise specs (``NoiseModel.parse``), all checked before any work;
    ``method`` / ``trajectories`` choose how noise is simulated; ``extra`` maps a run
    directory (as given) to fields added to its rows (e.g. the grid's ``setting``).
    ``test_limit``: evaluate on a fixed random subset of that many test images (the same
    for every setting; drawn with seed 0) when the full split is too slow to simulate
    under noise (``n_test`` records the size used).
    """
    from ..distillation.run import load_student
    from ..training.evaluation import evaluate

    if seeds < 1:
        raise QdistillError(f"seeds must be >= 1, got {seeds}")
    if test_limit is not None and test_limit < 1:
        raise QdistillError(f"test_limit must be >= 1 (or None: every test image), got "
                            f"{test_limit}")
    if method not in METHODS:
        raise QdistillError(f"noise method must be one of {', '.join(METHODS)}, got {method!r}")
    plan = _evaluations(shots_list, noise_list, seeds, method)
    names = [Path(r).name for r in run_dirs]
    rows: list[dict[str, Any]] = []
    # A progress bar over runs x settings x seeds, on a terminal only (tqdm's disable=None);
    # Each evaluation is a DEBUG line of this module's logger (evaluate --verbose).
    from tqdm.auto import tqdm

    bar = tqdm(total=len(run_dirs) * len(plan), desc="evaluate", unit="eval", disable=None,
               leave=False)
    for run_dir, name in zip(run_dirs, names, strict=True):
        model, meta = load_student(run_dir)
        model.to(device)
        images, labels = _test_split(meta)
        if test_limit is not None and test_limit < len(labels):
            keep = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
            images, labels = images[keep[:test_limit]], labels[keep[:test_limit]]
        teacher = (meta.get("teacher") or {}).get("arch", "none")
        base = {
            "run": name if names.count(name) == 1 else str(run_dir), "run_dir": str(run_dir),
            "student": meta["student"]["name"], "teacher": teacher, "dataset": meta["dataset"],
            "classes": meta["config"]["data"]["classes"], "qubits": meta["student"]["qubits"],
            "train_seed": meta["config"]["train"]["seed"],
            "train_noise": meta["student"].get("noise"), "n_test": len(labels),
            **dict((extra or {}).get(str(run_dir), {})),
        }
        for noise, shots, seed in plan:
            t0 = time.perf_counter()
            with noisy(model, noise[1] if noise else None, shots, seed, method, trajectories):
                acc = evaluate(model, images, labels)
            rows.append(dict(base, **_identity(noise, shots, seed, method),
                             noise=noise[0] if noise else "none", shots=shots or "exact",
                             test_acc=acc, seconds=round(time.perf_counter() - t0, 3)))
            bar.update()
            log.debug(f"{base['run']}: {rows[-1]['setting_label']} seed {rows[-1]['seed']}: "
                      f"test {100 * acc:.2f}% ({rows[-1]['seconds']:.1f}s)")
    bar.close()
    return rows


Evaluation = tuple[tuple[str, NoiseModel] | None, int | None, int | None]


def _identity(noise: tuple[str, NoiseModel] | None, shots: int | None, seed: int | None,
              method: str) -> dict[str, Any]:
    """The fields that tell one evaluation of a run from the others in its rows."""
    return {"setting_label": _label(noise and noise[0], shots),
            "seed": "" if seed is None else seed, "method": method if noise else ""}


def _evaluations(shots_list: Sequence[int] | str, noise_list: Sequence[str], seeds: int,
                 method: str) -> list[Evaluation]:
    """(noise, shots, seed) of every evaluation of one run, in order: exact, each shot
    count, each noise model, each noise model with each shot count; settings with
    randomness once per seed. Noise specs are all checked here, before any work."""
    shots_list = parse_shots(shots_list)
    noises = []
    for spec in noise_list:
        try:
            noises.append((spec, NoiseModel.parse(spec)))
        except ValueError as exc:
            raise QdistillError(str(exc)) from None
    settings: list[tuple[tuple[str, NoiseModel] | None, int | None]] = [(None, None)]
    settings += [(None, s) for s in shots_list] + [(n, None) for n in noises]
    settings += [(n, s) for n in noises for s in shots_list]
    plan: list[Evaluation] = []
    for noise, shots in settings:
        random = shots is not None or (noise is not None and method == "trajectories")
        plan += [(noise, shots, seed) for seed in (range(seeds) if random else [None])]
    return plan


def _cell(values: list[float]) -> str:
    a = 100 * np.asarray(values, dtype=float)
    if len(a) == 1:
        return f"{a[0]:.2f}"
    return f"{a.mean():.2f} ± {a.std(ddof=1):.2f} (n={len(a)})"


def _aggregate(rows: Sequence[dict[str, Any]], column: str
               ) -> tuple[list[str], list[str], dict[tuple[str, str], list[float]]]:
    """(settings, columns, (setting, column) -> values). ``column="run"``: the values are
    the seeds of one run; otherwise each run's mean over seeds, pooled over the runs."""
    settings = list(dict.fromkeys(r["setting_label"] for r in rows))
    columns = list(dict.fromkeys(str(r[column]) for r in rows))
    per_run: dict[tuple[str, str, str], list[float]] = {}
    for r in rows:
        per_run.setdefault((r["setting_label"], str(r[column]), r["run"]), []).append(
            float(r["test_acc"]))
    cells: dict[tuple[str, str], list[float]] = {}
    for (setting, col, _run), accs in per_run.items():
        if column == "run":
            cells[(setting, col)] = accs
        else:
            cells.setdefault((setting, col), []).append(float(np.mean(accs)))
    return settings, columns, cells


def robustness_table(rows: Sequence[dict[str, Any]], column: str = "run") -> str:
    """Markdown: one line per setting, one column per value of ``row[column]`` (runs, or
    e.g. teachers); cells are test accuracy %, mean ± std (n)."""
    settings, columns, cells = _aggregate(rows, column)
    lines = ["| setting | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 1)]
    for s in settings:
        lines.append(f"| {s} | " + " | ".join(_cell(cells[(s, c)]) if (s, c) in cells else ""
                                              for c in columns) + " |")
    return "\n".join(lines)


def _plot(rows: Sequence[dict[str, Any]], column: str, groups: list[str], path: Path) -> None:
    """Accuracy vs shots (left) and vs noise (right), one row of panels per group; a
    teacher has its palette colour (qdistill.reporting.palette), other columns (runs) take the
    palette's extra colours in order."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..reporting.palette import EXTRA, color
    from ..reporting.plots import legend_on_top, ordered_teachers

    all_columns = list(dict.fromkeys(str(r[column]) for r in rows))
    if column == "teacher":
        all_columns = ordered_teachers(all_columns)
    colors = {c: color(c) if column == "teacher" else EXTRA[i % len(EXTRA)]
              for i, c in enumerate(all_columns)}
    fig, axes = plt.subplots(len(groups), 2, figsize=(11, 0.6 + 3.4 * len(groups)),
                             squeeze=False, layout="constrained")
    for (ax_s, ax_n), group in zip(axes, groups, strict=True):
        sub = [r for r in rows if r.get("group", "") == group]
        settings, columns, cells = _aggregate(sub, column)
        shots = sorted({int(r["shots"]) for r in sub if r["shots"] != "exact"})
        noises = list(dict.fromkeys(r["noise"] for r in sub if r["noise"] != "none"))
        for col in columns:
            exact = 100 * np.mean(cells.get(("exact", col), [np.nan]))
            c = colors[col]
            if shots:
                vals = [cells.get((_label(None, s), col), [np.nan]) for s in shots]
                ax_s.errorbar(shots, [100 * np.mean(v) for v in vals],
                              yerr=[100 * np.std(v, ddof=1) if len(v) > 1 else 0 for v in vals],
                              marker="o", capsize=3, color=c, label=col)
                ax_s.axhline(exact, ls="--", lw=0.8, color=c)
            vals = [cells.get((_label(n, None), col), [np.nan]) for n in noises]
            ax_n.errorbar(range(len(noises) + 1), [exact] + [100 * np.mean(v) for v in vals],
                          yerr=[0] + [100 * np.std(v, ddof=1) if len(v) > 1 else 0
                                      for v in vals],
                          marker="o", capsize=3, color=c, label=col)
        ax_s.set_xscale("log")
        if shots:
            ax_s.set_xticks(shots, [str(s) for s in shots])
            ax_s.minorticks_off()
        ax_s.set_xlabel("shots (dashed: exact probabilities)")
        ax_n.set_xticks(range(len(noises) + 1), ["none", *noises], rotation=20, fontsize=7,
                        ha="right")
        ax_n.set_xlabel("noise model (exact probabilities)")
        for ax in (ax_s, ax_n):
            ax.set_ylabel("test accuracy % (mean ± std)", fontsize=8)
            ax.set_title(group or "accuracy", fontsize=9)
            ax.tick_params(labelsize=7.5)
    handles = [plt.Line2D([], [], color=colors[c], marker="o", label=c) for c in all_columns]
    legend_on_top(fig, handles, ncol=min(len(handles), 6 if column == "teacher" else 3))
    fig.savefig(path, dpi=110, bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)


def kd_robustness_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown: is a distilled student more or less robust than its baseline?

    For every run, its accuracy loss under a setting is ``exact - setting`` (mean over
    the evaluation seeds). Each distilled run is paired with the baseline (teacher
    ``none``) of the same grid row and training seed; the cell is the mean of
    ``loss(teacher) - loss(none)`` in points with its 95% t interval over the pairs,
    pooled over grid rows. Negative: the distilled student loses less. Runs whose exact
    accuracy is at chance (collapsed, < 1.5/K) are left out, as their loss is ~0.
    """
    from ..reporting.tables import collapsed, t_interval

    acc: dict[tuple[str, str, str, str], list[float]] = {}
    for r in rows:
        key = (r["group"], str(r["train_seed"]), str(r["teacher"]), r["setting_label"])
        acc.setdefault(key, []).append(float(r["test_acc"]))
    mean = {k: float(np.mean(v)) for k, v in acc.items()}
    ok = {k[:3] for k in mean if k[3] == "exact" and not collapsed(
        {"test_acc": mean[k], "classes": next(r["classes"] for r in rows
                                              if r["group"] == k[0])})}
    settings = [s for s in dict.fromkeys(r["setting_label"] for r in rows) if s != "exact"]
    teachers = sorted({k[2] for k in ok} - {"none"})
    lines = ["| setting | " + " | ".join(f"{t} - none" for t in teachers) + " |",
             "|" + "---|" * (len(teachers) + 1)]
    for s in settings:
        cells = []
        for t in teachers:
            diffs = [(mean[(g, sd, t, "exact")] - mean[(g, sd, t, s)])
                     - (mean[(g, sd, "none", "exact")] - mean[(g, sd, "none", s)])
                     for g, sd, tt in ok if tt == t and (g, sd, "none") in ok
                     and (g, sd, t, s) in mean and (g, sd, "none", s) in mean]
            if not diffs:
                cells.append("")
                continue
            m, lo, hi = (100 * v for v in t_interval(diffs))
            cells.append(f"{m:+.2f} [{lo:+.2f}, {hi:+.2f}] (n={len(diffs)})")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_robustness(rows: Sequence[dict[str, Any]], out: str | Path, column: str = "run",
                     title: str = "Robustness of trained students") -> dict[str, Path]:
    """``robustness.csv`` (every row), ``robustness.md`` (one table per ``group``) and
    ``robustness.png`` (accuracy vs shots and vs noise) in ``out``; returns the paths."""
    if not rows:
        raise QdistillError("no robustness rows to write")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "robustness.csv", "md": out / "robustness.md",
             "png": out / "robustness.png"}
    with open(paths["csv"], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    groups = list(dict.fromkeys(r.get("group", "") for r in rows))
    methods = sorted({r["method"] for r in rows if r["method"]})
    seeds = {str(r["seed"]) for r in rows if r["seed"] != ""}  # rows read back: strings
    parts = [f"# {title}", "",
             "Test accuracy %, mean ± std "
             + ("over seeds of the shot sampling / trajectories" if column == "run" else
                f"over runs (students with different training seeds; each run first "
                f"averaged over its {len(seeds) or 1} evaluation seed(s))")
             + "; a bare number is one deterministic evaluation. Noise simulated by "
             + (", ".join(methods) or "-") + " (see qdistill.quantum.noise); "
             "presets are approximations of public calibration figures.", ""]
    if column == "teacher" and "none" in {str(r["teacher"]) for r in rows}:
        parts += ["## Distilled vs baseline: extra accuracy lost to shots and noise", "",
                  "Points, paired by grid row and training seed, 95% t interval; negative: "
                  "the distilled student loses less than its baseline (see "
                  "`qdistill.experiments.robustness.kd_robustness_table`).", ""]
        for student in dict.fromkeys(str(r["student"]) for r in rows):
            parts += [f"Student `{student}`:", "", kd_robustness_table(
                [r for r in rows if str(r["student"]) == student]), ""]
    for group in groups:
        if group:
            parts += [f"## {group}", ""]
        parts += [robustness_table([r for r in rows if r.get("group", "") == group], column),
                  ""]
    paths["md"].write_text("\n".join(parts))
    _plot(rows, column, groups, paths["png"])
    return paths


def grid_robustness(out: str | Path, shots_list: Sequence[int] = DEFAULT_SHOTS,
                    noise_list: Sequence[str] = DEFAULT_NOISE, seeds: int = 3,
                    method: str = "density") -> dict[str, Path]:
    """Every finished student of a ``qdistill reproduce`` directory (``out/runs/*``), no
    teacher vs each teacher per grid row, written to ``out/robustness/``. A teacher
    trained for two lengths in the directory is two columns (``alexnet-te1``,
    ``alexnet-te10``), as in the grid's own tables.

    A run already in ``out/robustness/robustness.csv`` with exactly these evaluations is
    not evaluated again when its exact accuracy there equals its ``row.json`` test
    accuracy (a run trained again since is evaluated again): the evaluations are
    deterministic, so a grid that grew by a few runs costs only those."""
    import json

    from .reproduce import by_teacher_epochs

    done = sorted(p.parent for p in Path(out).glob("runs/*/row.json")
                  if (p.parent / "best.json").is_file())
    if not done:
        raise QdistillError(f"no finished student runs under {out}/runs")
    grid_rows = [json.loads((d / "row.json").read_text()) for d in done]
    named = [r for r in grid_rows if "teacher" in r]  # row.json of a reproduce grid
    labels = iter(by_teacher_epochs(named, {})[0])
    wanted = sorted(tuple(str(v) for v in _identity(*e, method).values())
                    for e in _evaluations(shots_list, noise_list, seeds, method))
    earlier = _earlier_rows(Path(out) / "robustness" / "robustness.csv")
    rows: list[dict[str, Any]] = []
    reused = 0
    for d, r in zip(done, grid_rows, strict=True):
        extra = {"group": r["setting"],
                 **({"teacher": next(labels)["teacher"]} if "teacher" in r else {})}
        old = earlier.get(d.name, [])
        exact = [float(o["test_acc"]) for o in old if o["setting_label"] == "exact"]
        if sorted((o["setting_label"], o["seed"], o["method"]) for o in old) == wanted \
                and "test_acc" in r and exact == [float(r["test_acc"])]:
            rows += [dict(o, **extra) for o in old]
            reused += 1
            continue
        rows += robustness_rows([d], shots_list, noise_list, seeds, method,
                                extra={str(d): extra})
    log.info(f"robustness: {len(done) - reused} runs evaluated, {reused} taken from "
             "robustness.csv")
    return write_robustness(rows, Path(out) / "robustness", column="teacher",
                            title=f"Robustness of the students in {Path(out).name}")


def read_robustness(csv_path: str | Path) -> list[dict[str, Any]]:
    """The rows of a ``robustness.csv`` written by :func:`write_robustness` (every value
    a string, as the CSV holds it; the tables and plots here take them as they are)."""
    with open(csv_path, newline="") as f:
        return list(csv.DictReader(f))


def _earlier_rows(csv_path: Path) -> dict[str, list[dict[str, Any]]]:
    """run name -> its rows in an earlier ``robustness.csv`` (none if there is none)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for row in read_robustness(csv_path) if csv_path.is_file() else []:
        out.setdefault(Path(row["run_dir"]).name, []).append(row)
    return out


def mean_accuracy(rows: Sequence[dict[str, Any]], setting: str, run: str | None = None
                  ) -> float:
    """Mean test accuracy of ``setting`` (``exact``, ``shots=100``, ``<noise>``,
    ``<noise> + shots=100``) over the matching rows (of ``run`` if given)."""
    vals = [float(r["test_acc"]) for r in rows
            if r["setting_label"] == setting and (run is None or r["run"] == run)]
    return float(np.mean(vals)) if vals else math.nan
