"""The KD study's figures, written by :func:`write_report` (``reproduce kd-study``'s
report: kd_study's tables, then these) beside table.md and drawn from the same numbers
(kd_study's ``_paired``, ``_by``, ``e2_pick``):

- ``gains.png`` (:func:`study_gains`, :func:`gains_figure`): a forest plot of the key
  paired comparisons, one panel per experiment, one header per cell: E1 every KD+T arm
  minus the PL+T arm of the same alpha, E4 the scalable soft targets minus PL+T, E2
  stage 2 the selected recipe minus no teacher, E3 every loss minus no teacher (with the
  collapses to chance). The primary comparisons are bold diamonds.
- ``e2_gains.png`` (:func:`e2_panels`, :func:`e2_figure`): E2 stage 1, the paired test
  gain over no teacher per T x alpha, one heatmap per cell and schedule.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..reporting import plots
from ..reporting.palette import OKABE_ITO, color
from ..reporting.tables import collapsed
from .kd_study import (
    E1_ALPHA,
    E1_T,
    E3_LOSSES,
    _arm,
    _by,
    _paired,
    e2_pick,
    e2_schedules,
    pl_control,
)
from .kd_study import write_report as write_tables
from .plan import GridOptions

Row = dict[str, Any]


@dataclass(frozen=True)
class Gain:
    """One row of ``gains.png``: ``treat`` minus ``control`` in ``cell`` of ``exp``, in
    accuracy points (mean and 95 % t-interval over the seeds both have, ``n`` pairs);
    ``note``: the collapses to chance, as the table's collapsed column."""
    exp: str
    cell: str
    treat: str
    control: str
    mean: float
    lo: float
    hi: float
    n: int
    primary: bool = False
    note: str = ""

    @property
    def label(self) -> str:
        return f"{self.treat} − {self.control}".replace("_", " ")


# experiment -> the panel's title
TITLES = {
    "E1": "E1: few labels + transfer set, soft targets (KD+T) minus pseudo-labels (PL+T) "
          "at the same alpha",
    "E4": "E4: E1's setting, soft targets the student can scale minus PL+T",
    "E2S2": "E2 stage 2: the selected recipe minus no teacher, fresh seeds 5-9",
    "E3": "E3: each loss minus no teacher, collapse-prone students",
}


def _cells(rows: Sequence[Row], exp: str) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {}
    for r in rows:
        if r["run_id"].startswith(exp + "_"):
            out.setdefault(_arm(r["run_id"])[0], []).append(r)
    return dict(sorted(out.items()))


def _arms(cell_rows: Sequence[Row]) -> list[str]:
    return list(dict.fromkeys(_arm(r["run_id"])[1] for r in cell_rows))


def _note(cell_rows: Sequence[Row], arms: Sequence[str]) -> str:
    parts = []
    for arm in arms:
        runs = [r for r in cell_rows if _arm(r["run_id"])[1] == arm]
        k = sum(collapsed(r) for r in runs)
        if k:
            parts.append(f"{k}/{len(runs)} collapsed" + ("" if arm == arms[0] else f" ({arm})"))
    return "; ".join(parts)


def _gain(rows: Sequence[Row], exp: str, cell: str, treat: str, control: str,
          primary: bool = False) -> Gain | None:
    m, lo, hi, n = _paired(_by(rows, cell, treat), _by(rows, cell, control))
    if not n:
        return None
    cell_rows = [r for r in rows if _arm(r["run_id"])[0] == cell]
    return Gain(exp, cell, treat, control, 100 * m, 100 * lo, 100 * hi, n, primary,
                _note(cell_rows, [treat, control]))


def study_gains(rows: Sequence[Row]) -> list[Gain]:
    """The rows of ``gains.png``, in points: per experiment present (E1, E4, E2S2, E3)
    and per cell, the comparisons its table prints, the primary one first."""
    kd_t, pl_t = f"KD+T_T{E1_T:g}_a{E1_ALPHA:g}", f"PL+T_a{E1_ALPHA:g}"
    ls_t, lskd_t = f"LS+T_T{E1_T:g}_a{E1_ALPHA:g}", f"LSKD+T_T{E1_T:g}_a{E1_ALPHA:g}"

    def e1(cell_rows: list[Row]) -> list[tuple[str, str, bool]]:
        kd = [a for a in _arms(cell_rows) if a.startswith("KD+T")]
        kd.sort(key=lambda a: (a != kd_t, a.rsplit("_a", 1)[1], float(a.split("_")[1][1:])))
        return [(a, pl_control(a), a == kd_t) for a in kd]

    def e4(cell_rows: list[Row]) -> list[tuple[str, str, bool]]:
        return [(ls_t, pl_t, True), (lskd_t, pl_t, False)]

    def e2s2(cell_rows: list[Row]) -> list[tuple[str, str, bool]]:
        return [(a, "none", True) for a in _arms(cell_rows) if a != "none"]

    def e3(cell_rows: list[Row]) -> list[tuple[str, str, bool]]:
        present = _arms(cell_rows)
        order = [a for a in E3_LOSSES if a in present] + sorted(
            a for a in present if a not in E3_LOSSES and a != "none")
        return [(a, "none", False) for a in order]

    pairs: dict[str, Callable[[list[Row]], list[tuple[str, str, bool]]]] = {
        "E1": e1, "E4": e4, "E2S2": e2s2, "E3": e3}
    out = []
    for exp, comparisons in pairs.items():
        for cell, cell_rows in _cells(rows, exp).items():
            for treat, control, primary in comparisons(cell_rows):
                g = _gain(rows, exp, cell, treat, control, primary)
                if g is not None:
                    out.append(g)
    return out


def _cell_title(cell: str) -> str:
    """"E3_mnist_0-7_v1" -> "mnist 0-7, paper-v1 student"."""
    words = cell.split("_")[1:]
    student = {"v1": "paper-v1 student", "v2": "paper-v2 student",
               "quantum": "fully quantum student"}
    if words and words[-1] in student:
        return " ".join(words[:-1]) + ", " + student[words[-1]]
    return " ".join(words)


def _side(g: Gain) -> str:
    if not (math.isfinite(g.lo) and math.isfinite(g.hi)) or g.lo <= 0 <= g.hi:
        return "#777777"
    return OKABE_ITO["blue"] if g.lo > 0 else OKABE_ITO["vermillion"]


def gains_figure(gains: Sequence[Gain]) -> Any:
    """The forest plot of ``gains``: one panel per experiment (its own x range), a grey
    header per cell, a row per comparison with its interval, mean, and numbers."""
    plt = plots.pyplot()
    exps = list(dict.fromkeys(g.exp for g in gains))
    layout = []  # per panel: [(y, header text or None, gain or None)], height
    for exp in exps:
        items: list[tuple[float, str | None, Gain | None]] = []
        y = 0.0
        for cell in dict.fromkeys(g.cell for g in gains if g.exp == exp):
            items.append((y, _cell_title(cell), None))
            y += 1
            for g in (g for g in gains if g.exp == exp and g.cell == cell):
                items.append((y, None, g))
                y += 1
            y += 0.3
        layout.append((items, y - 0.3))
    height = sum(h for _, h in layout)
    fig = plt.figure(figsize=(10.0, 1.2 + 0.25 * height + 0.55 * len(exps)),
                     layout="constrained")
    axes = fig.subplots(len(exps), 1, squeeze=False,
                        gridspec_kw={"height_ratios": [h + 1.6 for _, h in layout]})[:, 0]
    for ax, exp, (items, h) in zip(axes, exps, layout, strict=True):
        shown = [g for _, _, g in items if g is not None]
        ends = [v for g in shown for v in (g.mean, g.lo, g.hi, 0.0) if math.isfinite(v)]
        span = max(max(ends) - min(ends), 1.0)
        ax.set_xlim(min(ends) - 0.05 * span, max(ends) + 0.05 * span)
        ax.axvline(0, color=color("mark:zero"), lw=1.0, zorder=1)
        ticks, labels = [], []
        for y, header, g in items:
            if g is None:
                ax.axhspan(y - 0.5, y + 0.5, color="#efefef", lw=0, zorder=0.5)
                ax.text(0.005, y, header, transform=ax.get_yaxis_transform(), va="center",
                        ha="left", fontsize=8, fontweight="bold", zorder=6)
                continue
            c = _side(g)
            if math.isfinite(g.lo):
                ax.hlines(y, g.lo, g.hi, color=c, lw=2.0, zorder=2)
            ax.plot(g.mean, y, "D" if g.primary else "o", color=c,
                    markersize=7 if g.primary else 5.5, zorder=3,
                    markeredgecolor="black" if g.primary else c)
            ci = f" [{g.lo:+.2f}, {g.hi:+.2f}]" if math.isfinite(g.lo) else ""
            text = f"{g.mean:+.2f}{ci} (n={g.n})" + (f"  {g.note}" if g.note else "")
            ax.annotate(text, (1.0, y), xycoords=("axes fraction", "data"), xytext=(6, 0),
                        textcoords="offset points", va="center", fontsize=7.5,
                        fontweight="bold" if g.primary else "normal",
                        color=color("mark:collapsed") if g.note else "black",
                        annotation_clip=False)
            ticks.append(y)
            labels.append(g.label + ("  (primary)" if g.primary else ""))
        ax.set_yticks(ticks, labels, fontsize=8)
        for tick, y in zip(ax.get_yticklabels(), ticks, strict=True):
            g = next(g for yy, _, g in items if yy == y and g is not None)
            tick.set_fontweight("bold" if g.primary else "normal")
        ax.tick_params(axis="y", length=0)
        ax.tick_params(axis="x", labelsize=7.5)
        ax.set_ylim(h - 0.5, -0.6)
        ax.grid(axis="x", color="#eeeeee", lw=0.8)
        ax.set_axisbelow(True)
        ax.set_title(TITLES.get(exp, exp), fontsize=9, loc="left")
    axes[-1].set_xlabel("difference in test accuracy, points (paired by seed; mean and "
                        "95 % t-interval)", fontsize=8.5)
    handles = [plt.Line2D([], [], color=OKABE_ITO["blue"], marker="o", lw=2,
                          label="interval above 0"),
               plt.Line2D([], [], color=OKABE_ITO["vermillion"], marker="o", lw=2,
                          label="interval below 0"),
               plt.Line2D([], [], color="#777777", marker="o", lw=2, label="interval spans 0"),
               plt.Line2D([], [], color="#777777", marker="D", markeredgecolor="black",
                          lw=0, label="primary comparison")]
    try:
        fig.legend(handles=handles, loc="outside lower center", ncol=4, fontsize=8,
                   frameon=False)
    except ValueError:  # matplotlib < 3.7: no "outside" locations
        fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4,
                   fontsize=8, frameon=False)
    fig.suptitle("KD study: the key paired comparisons (results/kd-study/table.md)",
                 fontsize=10, x=0.01, ha="left")
    return fig


@dataclass(frozen=True)
class E2Panel:
    """E2 stage 1 in one cell at one schedule: ``grid[i][j]`` the paired test gain (points)
    of T ``ts[i]``, alpha ``alphas[j]`` over no teacher, ``text`` the numbers written."""
    cell: str
    epochs: int
    ts: tuple[float, ...]
    alphas: tuple[float, ...]
    grid: np.ndarray
    text: tuple[tuple[str, ...], ...]


def _recipe(arm: str) -> tuple[float, float]:
    """"T8_a0.1" -> (8.0, 0.1)."""
    t, a = arm.split("_a")
    return float(t[1:]), float(a)


def e2_panels(rows: Sequence[Row]) -> list[E2Panel]:
    """Per E2 cell (dataset x student) and schedule (short, full), the gains its table
    prints in the test gain column."""
    panels = []
    for cell, cell_rows in _cells(rows, "E2").items():
        recipes = {a: _recipe(a) for a in _arms(cell_rows) if a != "none"}
        ts = tuple(sorted({t for t, _ in recipes.values()}))
        alphas = tuple(sorted({a for _, a in recipes.values()}))
        for epochs in e2_schedules(cell_rows):
            grid = np.full((len(ts), len(alphas)), np.nan)
            text = [["" for _ in alphas] for _ in ts]
            base = e2_pick(cell_rows, "none", epochs, 0)
            for arm, (t, a) in recipes.items():
                m, lo, hi, n = _paired(e2_pick(cell_rows, arm, epochs, 0), base)
                if not n:
                    continue
                i, j = ts.index(t), alphas.index(a)
                grid[i, j] = 100 * m
                ci = f"\n[{100 * lo:+.2f}, {100 * hi:+.2f}]" if lo == lo else ""
                text[i][j] = f"{100 * m:+.2f}{ci}"
            panels.append(E2Panel(cell, epochs, ts, alphas, grid,
                                  tuple(tuple(r) for r in text)))
    return panels


def e2_figure(panels: Sequence[E2Panel]) -> Any:
    """The heatmaps of ``panels``: a row per cell, a column per schedule, one symmetric
    colour scale for all."""
    plt = plots.pyplot()
    cells = list(dict.fromkeys(p.cell for p in panels))
    schedules = sorted({p.epochs for p in panels})
    n_t = max(len(p.ts) for p in panels)
    fig = plt.figure(figsize=(3.6 * len(schedules) + 1.2, 1.3 + (0.55 * n_t + 0.8) * len(cells)),
                     layout="constrained")
    axes = fig.subplots(len(cells), len(schedules), squeeze=False)
    finite = [abs(v) for p in panels for v in p.grid.ravel() if math.isfinite(v)]
    lim = max([0.5, *finite])
    im = None
    for i, cell in enumerate(cells):
        for j, epochs in enumerate(schedules):
            ax = axes[i][j]
            p = next((p for p in panels if p.cell == cell and p.epochs == epochs), None)
            if p is None:
                ax.set_visible(False)
                continue
            im = plots.gain_heatmap_axes(ax, p.grid, [f"T={t:g}" for t in p.ts],
                                         [f"α={a:g}" for a in p.alphas], p.text, lim)
            ax.tick_params(labelsize=7.5, length=0)
            ax.set_title(f"{_cell_title(cell)}, {epochs} epochs", fontsize=8.5)
    fig.colorbar(im, ax=axes.ravel().tolist(), location="bottom", shrink=0.6, aspect=40,
                 pad=0.02, label="test gain over no teacher, points")
    fig.suptitle("E2 stage 1: paired test gain over no teacher (mean, 95 % t-interval), "
                 "red below 0, blue above", fontsize=9.5)
    return fig


def write_figures(rows: Sequence[Row], out: Path) -> list[Path]:
    """``gains.png`` and ``e2_gains.png`` in ``out`` where their experiments have runs;
    returns the paths written."""
    written = []
    gains = study_gains(rows)
    if gains:
        plots.save(gains_figure(gains), out / "gains.png")
        written.append(out / "gains.png")
    panels = e2_panels(rows)
    if panels:
        plots.save(e2_figure(panels), out / "e2_gains.png")
        written.append(out / "e2_gains.png")
    return written


def write_report(rows: list[Row], out: Path, opt: GridOptions, seconds: float) -> str:
    """``reproduce kd-study``'s report: ``table.md`` and ``runs.csv``
    (:func:`kd_study.write_report`), then ``gains.png`` and ``e2_gains.png``; returns the
    table's text."""
    text = write_tables(rows, out, opt, seconds)
    write_figures(rows, out)
    return text
