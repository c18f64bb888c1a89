"""Results of a grid: one CSV row per run, Markdown tables with the paper beside ours,
and PNG plots (matplotlib, Agg backend).

Every number is a mean +- sample standard deviation over seeds; a KD gain is the
paired difference (teacher minus no teacher, same seed, same validation split and
initial weights) with a two-sided 95% t confidence interval over seeds.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import plots

CSV_FIELDS = [
    "run_id", "grid", "setting", "dataset", "classes", "qubits", "student", "teacher", "seed",
    "test_acc", "val_acc", "best_epoch", "paper_metric_best_test_acc", "teacher_test_acc",
    "teacher_epochs", "params_classical", "params_quantum", "seconds",
]


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for row in sorted(rows, key=lambda r: r["run_id"]):
            w.writerow(row)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else float("nan")


def t_interval(diffs: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided ``level`` t confidence interval of paired differences."""
    from scipy import stats  # comes with scikit-learn

    a = np.asarray(diffs, dtype=float)
    m = float(a.mean())
    if len(a) < 2:
        return m, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, len(a) - 1) * a.std(ddof=1) / math.sqrt(len(a)))
    return m, m - half, m + half


def collapsed(row: dict[str, Any]) -> bool:
    """A run that ended at chance level: test accuracy below 1.5 / K."""
    spec = row.get("classes")
    from ..data import parse_classes

    k = 10 if spec in (None, "", "None") else len(parse_classes(spec, 10))
    return float(row["test_acc"]) < 1.5 / k


def _pct(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def _group(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[int, dict]]]:
    """setting -> teacher -> seed -> row."""
    out: dict[str, dict[str, dict[int, dict]]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        out[r["setting"]][r["teacher"]][int(r["seed"])] = r
    return out


def accuracy_table(rows: Sequence[dict[str, Any]], teachers: Sequence[str],
                   paper: dict[str, dict[str, float]], metric: str = "test_acc") -> str:
    """Markdown: one line per setting, mean +- std (n) per teacher, paper beside."""
    head = "| setting | params classical / quantum | " + " | ".join(teachers) + " |"
    lines = [head, "|" + "---|" * (len(teachers) + 2)]
    for setting, by_teacher in _group(rows).items():
        any_row = next(iter(next(iter(by_teacher.values())).values()))
        cells = []
        for t in teachers:
            seeds = by_teacher.get(t, {})
            if not seeds:
                cells.append("")
                continue
            m, s = mean_std([100 * r[metric] for r in seeds.values()])
            p = paper.get(setting, {}).get(t)
            ref = f" (paper {p:.2f})" if p is not None else ""
            dead = sum(collapsed(r) for r in seeds.values())
            flag = f" [{dead} at chance]" if dead else ""
            cells.append(f"{m:.2f} ± {_pct(s)} (n={len(seeds)}){flag}{ref}")
        params = f"{any_row['params_classical']:,} / {any_row['params_quantum']:,}"
        lines.append(f"| {setting} | {params} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


class Gains(dict):
    """(setting, teacher) -> (mean gain, ci low, ci high, n); ``at_chance`` holds, per
    key, how many of the n paired runs ended at chance (teacher run, baseline run)."""

    def __init__(self) -> None:
        super().__init__()
        self.at_chance: dict[tuple[str, str], tuple[int, int]] = {}


def gains(rows: Sequence[dict[str, Any]], teachers: Sequence[str],
          metric: str = "test_acc") -> Gains:
    """(setting, teacher) -> (mean gain, ci low, ci high, n) in points, paired by seed."""
    out = Gains()
    for setting, by_teacher in _group(rows).items():
        base = by_teacher.get("none", {})
        for t in teachers:
            if t == "none" or t not in by_teacher:
                continue
            seeds = sorted(set(base) & set(by_teacher[t]))
            if not seeds:
                continue
            diffs = [100 * (by_teacher[t][s][metric] - base[s][metric]) for s in seeds]
            m, lo, hi = t_interval(diffs)
            out[(setting, t)] = (m, lo, hi, len(seeds))
            out.at_chance[(setting, t)] = (sum(collapsed(by_teacher[t][s]) for s in seeds),
                                           sum(collapsed(base[s]) for s in seeds))
    return out


def gain_table(rows: Sequence[dict[str, Any]], teachers: Sequence[str],
               paper: dict[str, dict[str, float]], metric: str = "test_acc") -> str:
    g = gains(rows, teachers, metric)
    kd = [t for t in teachers if t != "none"]
    lines = ["| setting | " + " | ".join(f"{t} gain" for t in kd) + " |",
             "|" + "---|" * (len(kd) + 1)]
    for setting in _group(rows):
        cells = []
        for t in kd:
            if (setting, t) not in g:
                cells.append("")
                continue
            m, lo, hi, n = g[(setting, t)]
            p = paper.get(setting, {})
            ref = (f" (paper {p[t] - p['none']:+.2f})" if t in p and "none" in p else "")
            cells.append(f"{m:+.2f} [{_pct(lo)}, {_pct(hi)}]{ref}")
        lines.append(f"| {setting} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _chance(row: dict[str, Any]) -> float:
    from ..data import parse_classes

    spec = row.get("classes")
    return 1.0 / (10 if spec in (None, "", "None") else len(parse_classes(spec, 10)))


def plot_curves(histories: dict[str, dict[str, list[list[float]]]], path: Path,
                chance: dict[str, float | None] | None = None) -> None:
    """histories: setting -> teacher -> list over seeds of per-epoch test accuracy;
    chance: setting -> 1/K (default: read from the setting label)."""
    plots.save(plots.curves_figure(histories, chance), path)


def plot_gains(g: dict[tuple[str, str], tuple[float, float, float, int]],
               paper: dict[str, dict[str, float]], path: Path) -> None:
    """Forest plot of KD gains (points): ours with 95% CI vs the paper's single run;
    runs at chance noted beside their row when ``g`` comes from :func:`gains`."""
    plots.save(plots.forest_figure(g, paper, getattr(g, "at_chance", None)), path)


def accuracy_figure(rows: Sequence[dict[str, Any]], teachers: Sequence[str],
                    paper: dict[str, dict[str, float]]) -> Any:
    """The figure of :func:`plot_accuracy` (a matplotlib Figure, not saved)."""
    cells = {s: {t: [100 * float(r["test_acc"]) for r in by_seed.values()]
                 for t, by_seed in by_t.items()} for s, by_t in _group(rows).items()}
    chance = {r["setting"]: _chance(r) for r in rows}
    return plots.accuracy_figure(cells, teachers, paper, chance)


def plot_accuracy(rows: Sequence[dict[str, Any]], teachers: Sequence[str],
                  paper: dict[str, dict[str, float]], path: Path) -> None:
    """Test accuracy per grid row (like the paper's v2 ablation figure): one bar per
    teacher option (mean over seeds), every seed a dot, the paper's number a diamond."""
    plots.save(accuracy_figure(rows, teachers, paper), path)
