"""The report's figures: nothing drawn off the canvas at 1, 6 and 40 rows, and one colour
per teacher in every figure (read back from the drawn artists)."""

from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from qdistill.experiments import robustness  # noqa: E402
from qdistill.reporting import palette, plots  # noqa: E402
from qdistill.reporting import tables as report  # noqa: E402

USER_TEACHER = "runs/my-teacher"  # a teacher run directory: an extra palette colour
LONG = "fully quantum (avgpool + amplitude, hea x4), a needlessly long setting label"


def _grid(n_rows: int):
    """Rows of a synthetic grid with ``n_rows`` gains rows (setting x teacher): seeds
    at chance, intervals far off the axis, paper claims, two datasets, long labels."""
    kd = {1: ["lenet"], 6: ["lenet", "alexnet", "ensemble"],
          40: ["lenet", "alexnet", "ensemble", USER_TEACHER]}[n_rows]
    n_settings = n_rows // len(kd)
    rows, paper = [], {}
    for i in range(n_settings):
        ds = "mnist" if i < (n_settings + 1) // 2 else "fashion-mnist"
        setting = f"{ds} 0-7, {3 + i % 2} qubits, " + (f"{LONG} {i}" if i % 3 == 1 else f"#{i}")
        paper[setting] = {"none": 80.0, "lenet": 81.0 + i}
        for j, teacher in enumerate(["none", *kd]):
            for seed in range(3):
                dead = (i + j + seed) % 7 == 0  # below 1.5/8: at chance
                acc = 0.11 if dead else 0.80 + 0.01 * ((i + 2 * j + 3 * seed) % 5)
                curve = [acc * (0.6 + 0.04 * e) if not dead else 0.125 for e in range(10)]
                rows.append({"run_id": f"{i}-{teacher}-{seed}", "setting": setting,
                             "dataset": ds, "classes": "0-7", "teacher": teacher,
                             "seed": seed, "test_acc": acc, "test_acc_per_epoch": curve})
    return rows, ["none", *kd], paper


def _figures(n_rows: int, only: str | None = None) -> dict:
    rows, teachers, paper = _grid(n_rows)
    g = report.gains(rows, teachers)
    assert len(g) == n_rows
    if only == "gains":
        return {"gains": plots.forest_figure(g, paper, g.at_chance)}
    histories = defaultdict(lambda: defaultdict(list))
    for r in rows:
        histories[r["setting"]][r["teacher"]].append(r["test_acc_per_epoch"])
    return {"gains": plots.forest_figure(g, paper, g.at_chance),
            "curves": plots.curves_figure(histories),
            "accuracy": report.accuracy_figure(rows, teachers, paper)}


def _texts(fig):
    """Every text the renderer draws: tick labels only of ticks inside the view."""
    ticks, drawn = set(), []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                ticks.update((id(tick.label1), id(tick.label2)))
                if lo - 1e-9 <= tick.get_loc() <= hi + 1e-9:
                    drawn += [lb for lb in (tick.label1, tick.label2) if lb.get_visible()]
    drawn += [t for t in fig.findobj(Text) if id(t) not in ticks and t.get_visible()]
    return [t for t in drawn if t.get_text().strip()
            and (t.axes is None or t.axes.get_visible())]


def _check_inside(fig) -> None:
    # What plots.save does (savefig at plots.DPI, bbox_inches="tight"), without encoding
    # a PNG: draw (constrained layout runs), then the tight box savefig would crop to.
    fig.set_dpi(plots.DPI)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    canvas = fig.bbox
    tight = fig.get_tightbbox(renderer).transformed(fig.dpi_scale_trans)
    texts = _texts(fig)
    assert texts
    for t in texts:
        box = t.get_window_extent(renderer)
        for frame, name in ((canvas, "canvas"), (tight, "saved (tight) area")):
            assert (box.x0 >= frame.x0 - 1 and box.y0 >= frame.y0 - 1
                    and box.x1 <= frame.x1 + 1 and box.y1 <= frame.y1 + 1), (
                f"text {t.get_text()!r} at {box} is outside the {name} {frame}")


def _teacher_colors(fig) -> dict[str, set[str]]:
    """teacher -> the colours of the artists drawn for it (gid ``teacher:<name>``)."""
    out = defaultdict(set)
    for a in fig.findobj(lambda a: str(a.get_gid() or "").startswith("teacher:")):
        teacher = a.get_gid().split(":", 1)[1]
        if hasattr(a, "get_facecolor") and not hasattr(a, "get_linestyle"):
            out[teacher].add(to_hex(a.get_facecolor(), keep_alpha=False))
        elif hasattr(a, "get_segments"):  # LineCollection
            out[teacher].update(to_hex(c, keep_alpha=False) for c in a.get_color())
        elif hasattr(a, "get_xydata"):  # Line2D
            out[teacher].add(to_hex(a.get_color(), keep_alpha=False))
        else:  # Rectangle (bar)
            out[teacher].add(to_hex(a.get_facecolor(), keep_alpha=False))
    return out


def _robustness_figure(monkeypatch, tmp_path):
    """robustness._plot's figure (it saves and closes it: keep it open)."""
    rows = []
    for teacher in ("ensemble", "none", "lenet", "alexnet"):  # not the palette's order
        for shots in (None, 100, 1000):
            for noise in (None, "depolarizing=0.01"):
                rows.append({"group": "mnist 0-5, 3 qubits", "run": f"r-{teacher}",
                             "teacher": teacher, "setting_label": robustness._label(noise, shots),
                             "shots": shots or "exact", "noise": noise or "none",
                             "test_acc": 0.8})
    kept = []
    monkeypatch.setattr(plt, "close", kept.append)
    robustness._plot(rows, "teacher", ["mnist 0-5, 3 qubits"], tmp_path / "r.png")
    monkeypatch.undo()
    assert (tmp_path / "r.png").stat().st_size > 5_000
    return kept[0]


@pytest.mark.parametrize("n_rows", [1, 6, 40])
def test_no_text_off_the_canvas(n_rows):
    for name, fig in _figures(n_rows).items():
        try:
            _check_inside(fig)
        except AssertionError as e:
            raise AssertionError(f"{name} figure, {n_rows} rows: {e}") from None
        finally:
            plt.close(fig)


def test_forest_height_grows_with_rows():
    heights = []
    for n in (1, 6, 40):
        fig = _figures(n, "gains")["gains"]
        heights.append(fig.get_size_inches()[1])
        plt.close("all")
    assert heights[0] < heights[1] < heights[2]


def test_one_colour_per_teacher_in_every_figure(monkeypatch, tmp_path):
    seen = defaultdict(set)
    figs = _figures(40)
    for name, fig in figs.items():
        colors = _teacher_colors(fig)
        expected = {"lenet", "alexnet", "ensemble", USER_TEACHER} | (
            set() if name == "gains" else {"none"})
        assert set(colors) == expected, name
        for teacher, cs in colors.items():
            seen[teacher] |= cs
        plt.close(fig)
    fig = _robustness_figure(monkeypatch, tmp_path)
    handles = fig.legends[0].legend_handles
    for h in handles:
        seen[h.get_label()].add(to_hex(h.get_color(), keep_alpha=False))
    assert [h.get_label() for h in handles] == ["none", "lenet", "alexnet", "ensemble"]
    _check_inside(fig)
    plt.close(fig)
    for teacher, cs in seen.items():
        assert cs == {to_hex(palette.color(teacher))}, (teacher, cs)
    known = [palette.color(t) for t in ("none", "lenet", "alexnet", "ensemble", "mlp")]
    assert len(set(known)) == len(known)
    assert palette.color(USER_TEACHER) in palette.EXTRA
    assert palette.color(USER_TEACHER) == palette.color(USER_TEACHER)
    # a teacher at two training lengths: its own colour at 10 epochs, a tint below
    assert palette.color("alexnet-te10") == palette.color("alexnet")
    # vermillion #D55E00 half white: 213+21, 94+80.5, 0+127.5 (halves to even)
    assert palette.color("alexnet-te1") == "#EAAE80"
    assert len({palette.color(f"{t}-te{e}") for t in ("alexnet", "ensemble")
                for e in (1, 10)}) == 4


def test_rebuild_gives_the_same_table_and_all_figures(tmp_path, monkeypatch):
    import json

    from qdistill.experiments import grids, reproduce
    from qdistill.reporting import rebuild

    monkeypatch.setitem(grids.GRIDS, "tiny", lambda opt: [])
    monkeypatch.setitem(grids.PAPER_TABLES, "tiny", lambda: {})
    rows, _, _ = _grid(1)
    for r in rows:
        r.update(grid="", qubits=3, student="paper-v1", val_acc=r["test_acc"], best_epoch=10,
                 paper_metric_best_test_acc=r["test_acc"], teacher_test_acc=0.9,
                 teacher_epochs=1, params_classical=10, params_quantum=0, seconds=1.0)
        run = tmp_path / "runs" / r["run_id"]
        run.mkdir(parents=True)
        (run / "row.json").write_text(json.dumps(r))
    reproduce.write_report("tiny", rows, tmp_path, grids.GridOptions(), seconds=600.0)
    table = (tmp_path / "table.md").read_text()
    for f in ("gains.png", "curves.png", "accuracy.png"):
        (tmp_path / f).unlink()
    written = rebuild.rebuild(tmp_path)
    assert (tmp_path / "table.md").read_text() == table  # options and wall time kept
    for f in ("gains.png", "curves.png", "accuracy.png"):
        assert tmp_path / f in written and (tmp_path / f).stat().st_size > 10_000
