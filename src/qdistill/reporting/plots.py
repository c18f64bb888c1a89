"""The figures of a grid (matplotlib, Agg backend), drawn with the palette of
:mod:`qdistill.reporting.palette` so a teacher has one colour everywhere.

- :func:`forest_figure`: KD gains as a dot-and-interval (forest) plot, one row per
  setting x teacher, the paper's claim on the same row (``gains.png``).
- :func:`curves_figure`: learning curves, every seed thin, the median thick, seeds that
  end at chance dashed (``curves.png``).
- :func:`accuracy_figure`: test accuracy per setting and teacher, horizontal bars
  (mean) with every seed as a dot and the paper's number as a tick (``accuracy.png``).
- :func:`gain_heatmap_axes`: one panel of paired gains on a grid of two factors, red
  below 0 and blue above (``qdistill sweep``'s ``gains.png``, the KD study's E2).

Every figure uses constrained layout and grows with its number of rows;
:func:`save` writes it with ``bbox_inches="tight"``. The data come ready-made from
:mod:`qdistill.reporting.tables` (which turns a grid's rows into them).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .palette import color

TEACHER_ORDER = ("none", "lenet", "alexnet", "ensemble", "mlp")
DPI = 110
_PAPER = dict(marker="D", markersize=6, markerfacecolor="white", markeredgewidth=1.4,
              markeredgecolor=color("mark:paper"), linestyle="none")


def pyplot() -> Any:
    """matplotlib.pyplot with the Agg backend (imported on first use)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save(fig: Any, path: Path) -> None:
    fig.savefig(path, dpi=DPI, bbox_inches="tight", pad_inches=0.1)
    pyplot().close(fig)


def legend_on_top(fig: Any, handles: list[Any], ncol: int) -> None:
    """A figure legend above the panels, inside the canvas (matplotlib >= 3.7), else
    just above it (then only ``bbox_inches="tight"`` keeps it)."""
    try:
        fig.legend(handles=handles, loc="outside upper center", ncol=ncol, fontsize=8,
                   frameon=False)
    except ValueError:  # matplotlib < 3.7: no "outside" locations
        fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0),
                   ncol=ncol, fontsize=8, frameon=False)


def ordered_teachers(names: Sequence[str]) -> list[str]:
    """The known teachers in their usual order, then the others sorted."""
    names = set(names)
    return [t for t in TEACHER_ORDER if t in names] + sorted(names - set(TEACHER_ORDER))


def chance_of_setting(setting: str) -> float | None:
    """1/K read from a grid's setting label: ``"<dataset> <classes>, ..."`` (paper-v1)
    or ``"<dataset>, ..."`` (all 10 classes, paper-v2); None when it does not parse."""
    from ..data import parse_classes

    words = setting.split(",")[0].split()
    try:
        k = 10 if len(words) == 1 else len(parse_classes(words[1], 10))
    except Exception:
        return None
    return 1.0 / k if len(words) <= 2 else None


def _dataset_of(setting: str) -> str:
    return setting.split(",")[0].split()[0] if setting.strip() else setting


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width)) or text


# ---------------------------------------------------------------- gains (forest plot)

def _limits(points: list[float], ends: list[float]) -> tuple[float, float]:
    """x limits: ``points`` (means, claims, 0) with room; interval ends only as far as
    60 % of that span beyond them (the rest is clipped and marked)."""
    lo, hi = min(points), max(points)
    span = max(hi - lo, 4.0)
    lo = min(lo - 0.1 * span, max(min(ends + [lo]), lo - 0.6 * span))
    hi = max(hi + 0.1 * span, min(max(ends + [hi]), hi + 0.6 * span))
    pad = 0.04 * (hi - lo)
    return lo - pad, hi + pad


_CH = 0.07  # inches per character of 8 pt text (DejaVu Sans, a little generous)
_BOLD = 0.068  # the same, bold (measured: about 0.063)


def _row_layout(groups: Sequence[tuple[str, Sequence[str]]], right_chars: int = 0
                ) -> tuple[list[tuple[float, float, str, str | None, str]], float, float, bool]:
    """Rows of a forest / bar figure: per setting a header band, then a row per teacher;
    with one teacher per setting, one row per setting named after it (``compact``).
    Long labels are wrapped (rows grow to fit); the width grows when the headers would
    be squeezed. Returns ([(y centre, height, label, teacher or None, setting)], total
    height in rows, figure width in inches, compact)."""
    compact = all(len(ts) == 1 for _, ts in groups)
    label_chars = 46 if compact else 28
    left = [_wrap(s if compact else t, label_chars) for s, ts in groups
            for t in (ts[:1] if compact else ts)]
    left_in = max((len(x) for lb in left for x in lb.split("\n")), default=4) * _CH + 0.35
    right_in = right_chars * 0.055 + 0.15  # 7 pt notes
    # Widen the figure (7.5 to 12 inches) until headers of up to 75 characters fit on
    # one line; longer ones wrap.
    want = min(75, max((len(s) for s, _ in groups), default=0))
    width = min(12.0, max(7.5, left_in + right_in + 0.4 + want * _BOLD))
    header_chars = max(30, int((width - left_in - right_in - 0.4) / _BOLD))
    items: list[tuple[float, float, str, str | None, str]] = []
    y = 0.0
    for s, ts in groups:
        if compact:
            label = _wrap(s, label_chars)
            h = 1 + 0.6 * label.count("\n")
            items.append((y + (h - 1) / 2, h, label, ts[0], s))
            y += h
            continue
        label = _wrap(s, header_chars)
        h = 1 + 0.6 * label.count("\n")
        items.append((y + (h - 1) / 2, h, label, None, s))
        y += h
        for t in ts:
            label = _wrap(t, label_chars)
            h = 1 + 0.6 * label.count("\n")
            items.append((y + (h - 1) / 2, h, label, t, s))
            y += h
        y += 0.35
    return items, y, width, compact


def _draw_rows(ax: Any, items: list[tuple[float, float, str, str | None, str]], y: float,
               compact: bool) -> None:
    """Header bands, the teacher (or setting) tick labels and the y limits."""
    for yy, h, label, t, _ in items:
        if t is None:
            ax.axhspan(yy - h / 2, yy + h / 2, color="#efefef", lw=0, zorder=1.5)
            ax.text(0.006, yy, label, transform=ax.get_yaxis_transform(), va="center",
                    ha="left", fontsize=8, fontweight="bold", zorder=6, linespacing=1.1)
    rows = [it for it in items if it[3] is not None]
    ax.set_yticks([it[0] for it in rows], [it[2] for it in rows])
    for label, it in zip(ax.get_yticklabels(), rows, strict=True):
        label.set_fontsize(8)
        label.set_linespacing(1.1)
        label.set_color("black" if compact else color(it[3]))
    ax.tick_params(axis="y", length=0)
    ax.set_ylim(y - (0.5 if compact else 0.35), -0.6)
    ax.grid(axis="x", color="#eeeeee", lw=0.8)
    ax.set_axisbelow(True)


def forest_figure(g: Mapping[tuple[str, str], tuple[float, float, float, int]],
                  paper: Mapping[str, Mapping[str, float]],
                  at_chance: Mapping[tuple[str, str], tuple[int, int]] | None = None,
                  title: str = "Does the teacher help? KD gain per setting") -> Any:
    """``g``: (setting, teacher) -> (mean, ci low, ci high, n) in points;
    ``at_chance``: (setting, teacher) -> (teacher runs at chance, baseline runs at chance)
    among the n pairs."""
    plt = pyplot()
    at_chance = at_chance or {}
    settings = list(dict.fromkeys(s for s, _ in g))
    claims = {(s, t): paper.get(s, {}).get(t, math.nan) - paper.get(s, {}).get("none", math.nan)
              for s, t in g}
    # The axis is scaled to the means of rows without a run at chance (a collapsed seed
    # drags a mean by tens of points), the paper's claims and 0; what lies beyond is
    # clipped at the edge and marked.
    clean = [k for k in g if not any(at_chance.get(k, (0, 0)))] or list(g)
    points = [v for v in [g[k][0] for k in clean] + list(claims.values()) if math.isfinite(v)]
    ends = [v for k in g for v in g[k][1:3] if math.isfinite(v)]
    xmin, xmax = _limits(points + [0.0], ends)
    notes: dict[tuple[str, str], str] = {}
    for (s, t), (m, lo, _, n) in g.items():
        parts = [] if math.isfinite(lo) else [f"no interval (n={n})"]
        parts += [] if xmin <= m <= xmax else [f"mean {m:+.1f} off the axis"]
        kt, kb = at_chance.get((s, t), (0, 0))
        parts += [f"{k}/{n} {who} at chance" for k, who in ((kt, t), (kb, "none")) if k]
        notes[(s, t)] = "; ".join(parts)

    groups = [(s, ordered_teachers([t for ss, t in g if ss == s])) for s in settings]
    items, y, width, compact = _row_layout(groups, max(map(len, notes.values()), default=0))
    fig = plt.figure(figsize=(width, 1.5 + 0.23 * y), layout="constrained")
    ax = fig.add_subplot()
    ax.axvline(0, color=color("mark:zero"), lw=1.0, zorder=1)
    _draw_rows(ax, items, y, compact)
    any_clip = False
    for yy, _, _, t, s in items:
        if t is None:
            continue
        m, lo, hi, n = g[(s, t)]
        c, gid = color(t), f"teacher:{t}"
        if math.isfinite(lo) and math.isfinite(hi):
            ax.hlines(yy, max(lo, xmin), min(hi, xmax), color=c, lw=2.0, zorder=2, gid=gid)
            for end, edge, marker in ((lo, xmin, "<"), (hi, xmax, ">")):
                if (end < edge) if marker == "<" else (end > edge):
                    ax.plot(edge, yy, marker=marker, color=c, markersize=7, zorder=3,
                            clip_on=False, gid=gid)
                    any_clip = True
        if xmin <= m <= xmax:
            ax.plot(m, yy, "o", color=c, markersize=6.5, zorder=4, gid=gid)
        if math.isfinite(claims[(s, t)]):
            ax.plot(claims[(s, t)], yy, zorder=5, **_PAPER)
        if notes[(s, t)]:
            ax.annotate(notes[(s, t)], (1.0, yy), xycoords=("axes fraction", "data"),
                        xytext=(6, 0), textcoords="offset points", va="center",
                        fontsize=7, color=color("mark:collapsed"), annotation_clip=False)
    ax.set_xlim(xmin, xmax)
    ax.set_xlabel("KD gain, accuracy points (teacher minus no teacher, paired by seed)",
                  fontsize=9)
    shown = ordered_teachers({t for _, t in g})
    handles = [plt.Line2D([], [], color=color(shown[0]) if len(shown) == 1 else "#444444",
                          marker="o", lw=2.0, label="qdistill: mean over seeds, 95 % t "
                          "interval" + (f" ({shown[0]})" if len(shown) == 1 else ""))]
    if any(math.isfinite(v) for v in claims.values()):
        handles.append(plt.Line2D([], [], label="paper: one run, best test epoch", **_PAPER))
    if any_clip:
        handles.append(plt.Line2D([], [], color="#444444", marker=">", linestyle="none",
                                  label="interval continues off the axis"))
    ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=2,
              fontsize=7.5, frameon=False, borderaxespad=0.3)
    fig.suptitle(title, fontsize=10, x=0.02, ha="left")
    return fig


# ---------------------------------------------------------------- learning curves

def curves_figure(histories: Mapping[str, Mapping[str, Sequence[Sequence[float]]]],
                  chance: Mapping[str, float | None] | None = None) -> Any:
    """``histories``: setting -> teacher -> per seed, per-epoch test accuracy (0-1);
    ``chance``: setting -> 1/K (default: read from the setting's label)."""
    plt = pyplot()
    chance = {s: (chance or {}).get(s, chance_of_setting(s)) for s in histories}
    by_ds: dict[str, list[str]] = {}
    for s in histories:
        by_ds.setdefault(_dataset_of(s), []).append(s)
    cols = max(1, min(4 if len(histories) > 12 else 3, max(len(v) for v in by_ds.values())))
    n_rows = sum(math.ceil(len(v) / cols) for v in by_ds.values())
    width = max(3.9 * cols, 6.5)
    fig = plt.figure(figsize=(width, 0.7 + 2.7 * n_rows), layout="constrained")
    axes = fig.subplots(n_rows, cols, squeeze=False)
    teachers = ordered_teachers({t for v in histories.values() for t in v})
    r0, any_dead = 0, False
    for settings in by_ds.values():  # each dataset starts a row; one y range per dataset
        panel_axes = [axes[r0 + i // cols][i % cols] for i in range(len(settings))]
        for i in range(len(settings), math.ceil(len(settings) / cols) * cols):
            axes[r0 + i // cols][i % cols].set_visible(False)
        r0 += math.ceil(len(settings) / cols)
        lo, hi = 100.0, 0.0
        for ax, s in zip(panel_axes, settings, strict=True):
            ch, epochs = chance[s], 0
            for t in ordered_teachers(list(histories[s])):
                curves = [100 * np.asarray(c, dtype=float) for c in histories[s][t] if len(c)]
                if not curves:
                    continue
                c = color(t)
                for a in curves:
                    dead = ch is not None and a[-1] < 150 * ch
                    x = np.arange(1, len(a) + 1)
                    ax.plot(x, a, color=c, lw=0.9, alpha=0.55, ls="--" if dead else "-",
                            gid=f"teacher:{t}")
                    if dead:
                        ax.plot(x[-1], a[-1], "x", color=c, markersize=6, mew=1.5)
                        any_dead = True
                    lo, hi = min(lo, float(a.min())), max(hi, float(a.max()))
                e = min(len(a) for a in curves)
                med = np.median(np.stack([a[:e] for a in curves]), axis=0)
                ax.plot(np.arange(1, e + 1), med, color=c, lw=2.4, solid_capstyle="round",
                        marker="o" if e == 1 else None, gid=f"teacher:{t}")
                epochs = max(epochs, max(len(a) for a in curves))
            if ch is not None:
                ax.axhline(100 * ch, color=color("mark:zero"), lw=0.9, ls=":")
                lo = min(lo, 100 * ch)
            ax.set_title(_wrap(s, 48), fontsize=8.5)
            ax.set_xlabel("epoch", fontsize=8)
            ax.tick_params(labelsize=7.5)
            ax.xaxis.get_major_locator().set_params(integer=True)
            if epochs <= 2:  # too few epochs for the locator: one tick per epoch
                ax.set_xticks(range(1, epochs + 1))
        pad = max(2.0, 0.05 * (hi - lo))
        for i, ax in enumerate(panel_axes):
            ax.set_ylim(max(0.0, lo - pad), min(100.0, hi + pad))
            if i % cols == 0:
                ax.set_ylabel("test accuracy %", fontsize=8)
    handles = [plt.Line2D([], [], color=color(t), lw=2.4, label=t) for t in teachers]
    handles += [plt.Line2D([], [], color="#444444", lw=2.4, label="median over seeds"),
                plt.Line2D([], [], color="#444444", lw=0.9, alpha=0.7, label="one seed")]
    if any_dead:
        handles.append(plt.Line2D([], [], color="#444444", lw=0.9, ls="--", marker="x",
                                  label="seed ending at chance (< 1.5/K)"))
    if any(v is not None for v in chance.values()):
        handles.append(plt.Line2D([], [], color=color("mark:zero"), lw=0.9, ls=":",
                                  label="chance (1/K)"))
    legend_on_top(fig, handles, ncol=max(1, min(len(handles), int(width / 2.3))))
    return fig


# ---------------------------------------------------------------- accuracy bars

def accuracy_figure(cells: Mapping[str, Mapping[str, Sequence[float]]],
                    teachers: Sequence[str], paper: Mapping[str, Mapping[str, float]],
                    chance: Mapping[str, float | None] | None = None) -> Any:
    """``cells``: setting -> teacher -> per-seed test accuracy %; per setting a header
    row, then one horizontal bar per teacher (mean), each seed a dot, the paper's number
    a diamond, chance (1/K) a dotted line."""
    plt = pyplot()
    chance = chance or {}
    groups = [(s, [t for t in teachers if by_t.get(t)]) for s, by_t in cells.items()]
    items, y, width, compact = _row_layout([gr for gr in groups if gr[1]])
    fig = plt.figure(figsize=(width, 1.5 + 0.23 * y), layout="constrained")
    ax = fig.add_subplot()
    _draw_rows(ax, items, y, compact)
    shown_paper = False
    for yy, h, _, t, s in items:
        if t is None:
            continue
        vals = np.asarray(cells[s][t], dtype=float)
        ax.barh(yy, vals.mean(), height=0.72, color=color(t), lw=0, zorder=2,
                gid=f"teacher:{t}")
        ax.plot(vals, np.full(len(vals), yy), "o", markersize=3.4, color="white",
                markeredgecolor="#222222", markeredgewidth=0.7, zorder=3)
        p = paper.get(s, {}).get(t)
        if p is not None:
            ax.plot(p, yy, zorder=5, **_PAPER)
            shown_paper = True
        if chance.get(s) is not None:
            ax.vlines(100 * chance[s], yy - h / 2, yy + h / 2, color=color("mark:zero"),
                      lw=1.0, ls=":", zorder=4)
    ax.set_xlim(0, 100)
    ax.set_xlabel("test accuracy %", fontsize=9)
    handles = [plt.Rectangle((0, 0), 1, 1, color="#777777", label="mean over seeds"),
               plt.Line2D([], [], marker="o", markersize=3.4, color="white",
                          markeredgecolor="#222222", linestyle="none", label="one seed")]
    if compact:
        handles[0] = plt.Rectangle((0, 0), 1, 1, color=color(items[0][3]),
                                   label=f"mean over seeds ({items[0][3]})")
    if shown_paper:
        handles.append(plt.Line2D([], [], label="paper (one run, best test epoch)", **_PAPER))
    if any(chance.get(s) is not None for s in cells):
        handles.append(plt.Line2D([], [], color=color("mark:zero"), ls=":",
                                  label="chance (1/K)"))
    ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=2,
              fontsize=7.5, frameon=False, borderaxespad=0.3)
    fig.suptitle("Student test accuracy per setting and teacher", fontsize=10, x=0.02,
                 ha="left")
    return fig


# ---------------------------------------------------------------- gain heatmap

def gain_heatmap_axes(ax: Any, grid: np.ndarray, row_labels: Sequence[str],
                      col_labels: Sequence[str], text: Sequence[Sequence[str]], lim: float,
                      fontsize: float = 7) -> Any:
    """One heatmap panel on ``ax``: ``grid`` (gains in points, NaN left blank) red below 0
    and blue above on the symmetric scale [-lim, lim], ``text[i][j]`` written in cell
    (i, j) (white on the darkest cells). Returns the image, for a colour bar."""
    im = ax.imshow(grid, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            dark = np.isfinite(grid[i, j]) and abs(grid[i, j]) > 0.6 * lim
            ax.text(j, i, text[i][j], ha="center", va="center", fontsize=fontsize,
                    color="white" if dark else "black")
    ax.set_xticks(range(len(col_labels)), list(col_labels))
    ax.set_yticks(range(len(row_labels)), list(row_labels))
    return im
