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
    from .data import parse_classes

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


def gains(rows: Sequence[dict[str, Any]], teachers: Sequence[str],
          metric: str = "test_acc") -> dict[tuple[str, str], tuple[float, float, float, int]]:
    """(setting, teacher) -> (mean gain, ci low, ci high, n) in points, paired by seed."""
    out = {}
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


def plot_curves(histories: dict[str, dict[str, list[list[float]]]], path: Path) -> None:
    """histories: setting -> teacher -> list over seeds of per-epoch test accuracy."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(histories)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax, (setting, by_teacher) in zip(axes.flat, histories.items(), strict=False):
        for teacher, curves in sorted(by_teacher.items()):
            a = 100 * np.asarray(curves, dtype=float)
            x = np.arange(1, a.shape[1] + 1)
            ax.plot(x, a.mean(0), label=teacher)
            if len(a) > 1:
                ax.fill_between(x, a.min(0), a.max(0), alpha=0.15)
        ax.set_title(setting, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy % (mean, min-max over seeds)")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_gains(g: dict[tuple[str, str], tuple[float, float, float, int]],
               paper: dict[str, dict[str, float]], path: Path) -> None:
    """Bar chart of KD gains (points): ours with 95% CI vs the paper's single run."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(g)
    x = np.arange(len(keys))
    ours = np.array([g[k][0] for k in keys])
    err = np.array([[g[k][0] - g[k][1], g[k][2] - g[k][0]] for k in keys]).T
    err = np.nan_to_num(err)
    theirs = np.array([paper.get(s, {}).get(t, np.nan) - paper.get(s, {}).get("none", np.nan)
                       for s, t in keys])
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(keys) + 2), 4.2))
    ax.bar(x - 0.2, ours, 0.4, yerr=err, capsize=3, label="qdistill (mean, 95% CI)")
    ax.bar(x + 0.2, theirs, 0.4, label="paper (one run, test-selected)")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, [f"{s}\n{t}" for s, t in keys], rotation=90, fontsize=6)
    ax.set_ylabel("KD gain, accuracy points")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_accuracy(rows: Sequence[dict[str, Any]], teachers: Sequence[str],
                  paper: dict[str, dict[str, float]], path: Path) -> None:
    """Grouped bar chart of test accuracy per grid row (like the paper's v2 ablation
    figure): one bar per teacher option, mean ± std over seeds, the paper's number as a
    black tick where it has one."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grouped = _group(rows)
    settings = list(grouped)
    width = 0.8 / max(1, len(teachers))
    fig, ax = plt.subplots(figsize=(min(20, max(7, 0.25 * len(settings) * len(teachers) + 2)), 5.5))
    for i, t in enumerate(teachers):
        x = np.arange(len(settings)) - 0.4 + width * (i + 0.5)
        vals = [[100 * float(r["test_acc"]) for r in grouped[s].get(t, {}).values()]
                for s in settings]
        means = [np.mean(v) if v else np.nan for v in vals]
        stds = [np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in vals]
        ax.bar(x, means, width, yerr=stds, capsize=2, label=t)
        theirs = [paper.get(s, {}).get(t, np.nan) for s in settings]
        ax.scatter(x, theirs, marker="_", s=120, color="black",
                   label="paper" if i == 0 else None, zorder=3)
    ax.set_xticks(np.arange(len(settings)), settings, rotation=90, fontsize=6)
    ax.set_ylabel("test accuracy % (mean ± std over seeds)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, ncol=len(teachers) + 1)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
