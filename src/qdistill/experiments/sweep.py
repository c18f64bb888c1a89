"""``qdistill sweep``: a grid over any config keys, each run paired with the no-teacher
baseline of the same seed.

    qdistill sweep --grid kd.temperature=1,2,4,8 kd.alpha=0.1,0.5,0.9 seed=0-4 \\
        --student paper-v2 --qubits 4 --dataset digits --classes 0-3 --out sweeps/t-alpha

An axis is ``KEY=V1,V2,...``: a config key of ``qdistill distill`` (``kd.temperature``,
``train.lr``, ``student.qubits``, ``kd.options.beta``, or a short name from
``ALIASES``: ``seed``, ``temperature``, ``alpha``, ``loss`` ...), values parsed as YAML
scalars; an integer key also takes ranges (``seed=0-4``); separate values with ``;``
when they hold commas (``data.classes=0,3,7;0-5``). Every other option is the base
config, given as to ``qdistill distill`` (options or ``--config``).

Each run's directory is ``OUT/runs/<axis values>-<hash of the whole config>``, so no two
configs share one and a changed base config is new runs, never a clash. For every run
with a teacher the sweep also runs its baseline: the same config with no teacher (and no
transfer set: the baseline sees the labelled images only), once per distinct config.
The report (``runs.csv``, ``table.md``, ``gains.png``) gives per cell (the axes except
the seed) the mean test accuracy, the paired gain over the baseline of the same seed
(mean and 95 % t-interval; validation gain beside it), the epochs selected and the
collapses to chance. Runs go through the same runner as ``qdistill reproduce``: teachers
first, resumable, on a process pool or Ray, in lockstep where runs can share a step.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_type_hints

import yaml

from ..config import DistillConfig, KDConfig, apply_overrides, from_dict, validate
from ..errors import ConfigError
from ..reporting import plots
from ..reporting.tables import collapsed, mean_std, t_interval
from ..training.tasks import config_key
from .plan import Run
from .runner import run_all

log = logging.getLogger(__name__)

# Short names for the keys a sweep varies most (the "loss.temperature" too).
ALIASES = {
    "seed": "train.seed", "epochs": "train.epochs", "lr": "train.lr",
    "batch_size": "train.batch_size", "temperature": "kd.temperature", "alpha": "kd.alpha",
    "loss": "kd.variant", "teacher": "kd.teacher", "loss.temperature": "kd.temperature",
    "loss.alpha": "kd.alpha", "qubits": "student.qubits", "transfer": "data.transfer",
    "labels_per_class": "data.train_per_class", "student": "student.name",
}
SEED = "train.seed"


@dataclass
class Axis:
    key: str  # a DistillConfig key, e.g. "kd.temperature"
    values: list[Any]

    @property
    def label(self) -> str:  # the short name in run ids and tables
        return next((a for a, k in ALIASES.items() if k == self.key and "." not in a),
                    self.key)


def _field_type(key: str) -> Any:
    """The type of config key ``key`` ("kd.options.beta": float); a clear error for a
    key ``qdistill distill`` does not have."""
    cls: Any = DistillConfig
    parts = key.split(".")
    for i, part in enumerate(parts):
        hints = get_type_hints(cls)
        if part not in hints:
            raise ConfigError(f"--grid {key}: {'.'.join(parts[:i + 1])!r} is not a config "
                              f"key; valid here: {', '.join(sorted(hints))}", key=key)
        tp = hints[part]
        last = i == len(parts) - 1
        if dataclasses.is_dataclass(tp) and not last:
            cls = tp
        elif part == "options" and i == len(parts) - 2:  # kd.options.<name>: a loss option
            return float
        elif last and not dataclasses.is_dataclass(tp):
            return tp
        else:
            raise ConfigError(f"--grid {key}: not a config key (sections: student, kd, "
                              "data, train)", key=key)
    raise AssertionError("unreachable")


def parse_axis(spec: str) -> Axis:
    """``"kd.alpha=0.1,0.5"`` -> Axis("kd.alpha", [0.1, 0.5]); ``"seed=0-4"`` -> seeds
    0..4. Values are YAML scalars; ``;`` separates values that hold commas."""
    key, eq, raw = spec.partition("=")
    key = ALIASES.get(key.strip(), key.strip())
    if not eq or not raw.strip():
        raise ConfigError(f"--grid {spec!r}: give KEY=V1,V2,... (e.g. kd.alpha=0.1,0.5 or "
                          "seed=0-4)")
    tp = _field_type(key)
    integer = tp is int or int in get_args(tp)
    values: list[Any] = []
    for item in (raw.split(";") if ";" in raw else raw.split(",")):
        item = item.strip()
        lo, dash, hi = item.partition("-")
        if integer and dash and lo.isdigit() and hi.isdigit():
            if int(hi) < int(lo):
                raise ConfigError(f"--grid {spec!r}: empty range {item}", key=key)
            values += list(range(int(lo), int(hi) + 1))
        else:
            values.append(yaml.safe_load(item) if item else None)
    if len(set(map(json.dumps, values))) != len(values):
        raise ConfigError(f"--grid {spec!r}: a value is given twice", key=key)
    return Axis(key, values)


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return "".join(c if c.isalnum() or c in ".-" else "_" for c in text)


def _run_id(items: Sequence[tuple[Axis, Any]], cfg: DistillConfig) -> str:
    named = "_".join(f"{a.label}={_short(v)}" for a, v in items) or "base"
    return f"{named}-{config_key(cfg)[:8]}"


def baseline_of(cfg: DistillConfig) -> DistillConfig:
    """The same run without a teacher: plain cross-entropy on the labelled images."""
    return dataclasses.replace(cfg, kd=KDConfig(teacher="none"),
                               data=dataclasses.replace(cfg.data, transfer=None))


@dataclass
class Plan:
    axes: list[Axis]
    runs: list[Run]
    cells: dict[str, dict[str, Any]]  # run_id -> {axis label: value} (grid runs only)
    baseline: dict[str, str]  # run_id (with a teacher) -> its baseline's run_id


def plan(base: dict[str, Any], axes: Sequence[Axis]) -> Plan:
    """Every combination of ``axes`` on the base config (a DistillConfig dict), each
    checked (types, ranges) before anything runs, plus the baselines."""
    keys = [a.key for a in axes]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"--grid names {sorted(k for k in keys if keys.count(k) > 1)[0]} "
                          "twice")
    runs: dict[str, Run] = {}  # by config key: one run per distinct config
    cells: dict[str, dict[str, Any]] = {}
    baseline: dict[str, str] = {}
    for combo in itertools.product(*(a.values for a in axes)):
        items = list(zip(axes, combo, strict=True))
        data = apply_overrides(json.loads(json.dumps(base)),
                               [f"{a.key}={json.dumps(v)}" for a, v in items])
        cfg = from_dict(DistillConfig, data)
        validate(cfg)
        run = runs.setdefault(config_key(cfg), Run(_run_id(items, cfg), "sweep", cfg))
        cells[run.run_id] = {a.label: v for a, v in items}
        if cfg.kd.teacher != "none":
            b = baseline_of(cfg)
            # named by the axes a baseline keeps (not kd.*, not the transfer set); a grid
            # cell that is itself this baseline (teacher none) is used as it is
            kept = [(a, v) for a, v in items if not a.key.startswith(("kd.", "data.transfer"))]
            brun = runs.setdefault(config_key(b), Run("baseline_" + _run_id(kept, b),
                                                      "baseline", b))
            baseline[run.run_id] = brun.run_id
    return Plan(list(axes), list(runs.values()), cells, baseline)


def run_sweep(base: dict[str, Any], axes: Sequence[Axis], out: Path, *, workers: int = 1,
              executor: str = "local", address: str | None = None, device: str = "cpu",
              lockstep: bool = True) -> list[dict[str, Any]]:
    """Run (or resume) the sweep into ``out`` and write its report; returns the report's
    rows (one per grid run)."""
    p = plan(base, axes)
    log.info(f"sweep: {len(p.cells)} grid runs + {len(p.runs) - len(p.cells)} baselines")
    report: list[dict[str, Any]] = []

    def write(rows: list[dict[str, Any]], seconds: float) -> None:
        report[:] = write_report(p, {r["run_id"]: r for r in rows}, out, seconds)

    run_all(p.runs, out, label="sweep", workers=workers, executor=executor,
            address=address, device=device, lockstep=lockstep, report=write)
    return report


def report_rows(p: Plan, done: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per finished grid run: its axis values, accuracies and the paired gain."""
    rows = []
    for rid, values in p.cells.items():
        if rid not in done:
            continue
        r = done[rid]
        b = done.get(p.baseline.get(rid, ""))
        rows.append({
            "run_id": rid, **values, "test_acc": r["test_acc"], "val_acc": r["val_acc"],
            "best_epoch": r["best_epoch"], "epochs": len(r["test_acc_per_epoch"]),
            "collapsed": collapsed(r),
            "baseline_test_acc": b["test_acc"] if b else None,
            "gain": r["test_acc"] - b["test_acc"] if b else None,
            "val_gain": r["val_acc"] - b["val_acc"] if b else None,
        })
    return rows


def summarize(p: Plan, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per cell (axis values except the seed): n, mean test accuracy, gain with its
    interval, validation gain, last-epoch selections and collapses."""
    labels = [a.label for a in p.axes if a.key != SEED]
    by_cell: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_cell[tuple(json.dumps(r[k]) for k in labels)].append(r)
    cells = []
    for axis_values in itertools.product(*(a.values for a in p.axes if a.key != SEED)):
        group = by_cell.get(tuple(json.dumps(v) for v in axis_values), [])
        if not group:
            continue
        gains = [r["gain"] for r in group if r["gain"] is not None]
        vgains = [r["val_gain"] for r in group if r["val_gain"] is not None]
        mean, std = mean_std([r["test_acc"] for r in group])
        g = t_interval(gains) if gains else (float("nan"),) * 3
        cells.append({
            **dict(zip(labels, axis_values, strict=True)), "n": len(group), "mean": mean,
            "std": std, "gain": g[0], "lo": g[1], "hi": g[2], "n_paired": len(gains),
            "val_gain": sum(vgains) / len(vgains) if vgains else float("nan"),
            "last_epoch": sum(r["best_epoch"] == r["epochs"] for r in group),
            "collapsed": sum(r["collapsed"] for r in group),
        })
    return cells


def _pts(x: float) -> str:
    return "n/a" if x != x else f"{100 * x:+.2f}"


def write_report(p: Plan, done: dict[str, dict[str, Any]], out: Path,
                 seconds: float = 0.0) -> list[dict[str, Any]]:
    """runs.csv, table.md and gains.png in ``out``; returns the per-run rows."""
    import csv

    rows = report_rows(p, done)
    labels = [a.label for a in p.axes]
    fields = ["run_id", *labels, "test_acc", "val_acc", "best_epoch", "epochs", "collapsed",
              "baseline_test_acc", "gain", "val_gain"]
    with open(out / "runs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    cells = summarize(p, rows)
    cell_labels = [a.label for a in p.axes if a.key != SEED]
    lines = [
        "# Sweep: test accuracy and paired gain over the no-teacher baseline",
        "",
        "Gain = run minus the baseline of the same seed (same config without a teacher or "
        "a transfer set), in points; 95 % t-interval over seeds; val gain = the same on "
        "the validation split. Last = runs that selected their last epoch; collapsed = "
        "runs that ended below 1.5/K.",
        "",
        "| " + " | ".join([*cell_labels, "n", "test acc %", "gain", "95 % CI", "val gain",
                          "last", "collapsed"]) + " |",
        "|" + "---|" * (len(cell_labels) + 7),
    ]
    for c in cells:
        ci = "n/a" if c["lo"] != c["lo"] else f"[{_pts(c['lo'])}, {_pts(c['hi'])}]"
        lines.append("| " + " | ".join([
            *(str(c[k]) for k in cell_labels), str(c["n"]),
            f"{100 * c['mean']:.2f} ± {100 * c['std']:.2f}" if c["n"] > 1
            else f"{100 * c['mean']:.2f}",
            _pts(c["gain"]), ci, _pts(c["val_gain"]), f"{c['last_epoch']}/{c['n']}",
            f"{c['collapsed']}/{c['n']}"]) + " |")
    base = {b for b in p.baseline.values()}
    bdone = [done[b] for b in base if b in done]
    if bdone:
        m, s = mean_std([r["test_acc"] for r in bdone])
        lines += ["", f"Baselines: {len(bdone)} runs, test accuracy {100 * m:.2f} % "
                      f"(± {100 * s:.2f} over runs)."]
    lines += ["", f"Axes: {json.dumps({a.key: a.values for a in p.axes})}. "
                  f"Wall time of this invocation: {seconds / 60:.1f} min."]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    if any(c["n_paired"] for c in cells):
        gain_heatmap(cells, [a for a in p.axes if a.key != SEED], out / "gains.png")
    return rows


def gain_heatmap(cells: list[dict[str, Any]], axes: Sequence[Axis], path: Path) -> None:
    """Mean paired gain per cell (points; red below 0, blue above), its interval written
    in; rows: all axes but the last, columns: the last axis."""
    plt = plots.pyplot()
    import numpy as np

    col_axis = axes[-1] if axes else None
    row_axes = list(axes[:-1])
    cols = col_axis.values if col_axis else [None]
    rows = list(itertools.product(*(a.values for a in row_axes))) or [()]
    grid = np.full((len(rows), len(cols)), np.nan)
    text = [["" for _ in cols] for _ in rows]
    for c in cells:
        i = rows.index(tuple(c[a.label] for a in row_axes))
        j = cols.index(c[col_axis.label]) if col_axis else 0
        grid[i, j] = 100 * c["gain"]
        ci = "" if c["lo"] != c["lo"] else f"\n[{100 * c['lo']:+.1f}, {100 * c['hi']:+.1f}]"
        text[i][j] = f"{100 * c['gain']:+.1f}{ci}"
    lim = max(1.0, float(np.nanmax(np.abs(grid)))) if np.isfinite(grid).any() else 1.0
    fig, ax = plt.subplots(figsize=(1.2 + 1.15 * len(cols), 0.8 + 0.6 * len(rows)))
    im = plots.gain_heatmap_axes(
        ax, grid, [", ".join(f"{a.label}={v}" for a, v in zip(row_axes, r, strict=True))
                   for r in rows], [str(v) for v in cols], text, lim)
    ax.set_xlabel(col_axis.label if col_axis else "")
    ax.set_title("KD gain over no teacher (points, paired by seed)", fontsize=9)
    fig.colorbar(im, ax=ax, label="gain (points)")
    plots.save(fig, path)
