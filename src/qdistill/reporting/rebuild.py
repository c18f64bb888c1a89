"""Rebuild the tables and figures of committed results directories from their committed
files, training and evaluating nothing:

    python -m qdistill.reporting.rebuild results/paper-v1 results/paper-v2 ...

A grid directory (``runs/*/row.json`` + ``table.md``, written by ``qdistill
reproduce``) goes through :func:`qdistill.experiments.reproduce.write_report` again, the code
``qdistill reproduce`` itself runs: ``runs.csv``, ``table.md``, ``accuracy.png``,
``curves.png``, ``gains.png``. The committed table.md's ``Options`` / wall-time line is
kept (this command ran no grid). A ``robustness.csv`` (``<grid>/robustness/``, or a
``qdistill evaluate`` directory) gets its ``robustness.png`` redrawn.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import QdistillError
from ..experiments import grids, reproduce
from ..experiments.robustness import _plot as plot_robustness
from ..experiments.robustness import read_robustness


def rebuild_grid(d: Path) -> list[Path]:
    """``reproduce.write_report`` on the rows of ``d/runs/*/row.json``."""
    table = d / "table.md"
    old = table.read_text()
    head = re.match(r"# (\S+?)( \(quick\))?: ", old)
    opts = re.search(r"^Options: (\{.*\})\. Wall time.*$", old, re.M)
    if not head or not opts or head.group(1) not in grids.GRIDS:
        raise QdistillError(f"{table}: not a table written by qdistill reproduce")
    fields = {f.name for f in dataclasses.fields(grids.GridOptions)}
    opt = grids.GridOptions(**{k: v for k, v in json.loads(opts.group(1)).items()
                                   if k in fields})
    rows = [json.loads(p.read_text()) for p in sorted(d.glob("runs/*/row.json"))]
    if not rows:
        raise QdistillError(f"no finished runs (runs/*/row.json) under {d}")
    reproduce.write_report(head.group(1), rows, d, opt, seconds=0.0)
    new = table.read_text()
    line = re.search(r"^Options: .*$", new, re.M)
    if line:  # keep the committed options and wall time: this call ran nothing
        table.write_text(new.replace(line.group(0), opts.group(0)))
    return [d / f for f in ("table.md", "runs.csv", "accuracy.png", "curves.png",
                            "gains.png") if (d / f).is_file()]


def rebuild_robustness(csv_path: Path, column: str) -> Path:
    """``robustness.png`` beside ``csv_path`` (``column``: ``teacher`` for a grid's
    robustness/, ``run`` for ``qdistill evaluate``)."""
    rows = read_robustness(csv_path)
    groups = list(dict.fromkeys(r.get("group", "") for r in rows))
    png = csv_path.with_suffix(".png")
    plot_robustness(rows, column, groups, png)
    return png


def rebuild(directory: str | Path) -> list[Path]:
    """Every table and figure of ``directory`` that can be rebuilt; the files written."""
    d = Path(directory)
    written: list[Path] = []
    if (d / "table.md").is_file() and (d / "runs").is_dir():
        written += rebuild_grid(d)
    for csv_path, column in ((d / "robustness" / "robustness.csv", "teacher"),
                             (d / "robustness.csv", "run")):
        if csv_path.is_file():
            written.append(rebuild_robustness(csv_path, column))
    if not written:
        raise QdistillError(f"{d}: neither a grid directory (table.md + runs/) nor a "
                            "directory with a robustness.csv")
    return written


def main(argv: Sequence[str] | None = None) -> int:
    dirs = list(sys.argv[1:] if argv is None else argv)
    if not dirs or dirs[0] in ("-h", "--help"):
        print("usage: python -m qdistill.reporting.rebuild DIR [DIR...]\n\n" + (__doc__ or ""))
        return 0 if dirs else 2
    try:
        for d in dirs:
            for p in rebuild(d):
                print(p)
    except QdistillError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
