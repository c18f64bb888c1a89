"""Benchmark: wall time of the full paper-v1 student grid with teachers cached (not a test).

The issue's target: the 72 paper-v1 student runs (6 settings x 4 teacher options x 3
seeds) in under 15 minutes on 2 CPU cores once the teachers exist. This script first
makes sure every teacher the grid needs is in the cache (trained if missing, NOT
timed), then times `run_grid` alone into a fresh temporary directory.

    python benchmarks/grid_time.py --teacher-epochs lenet=10,alexnet=1,ensemble=1
    python benchmarks/grid_time.py --workers 1 --only 'mnist_0-5_q3_*'   # a slice

Run it on an otherwise idle machine: two processes sharing the cores slow batch-1
training several-fold.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from lockstep import PAPER_RUNS, grid_runs  # benchmarks/lockstep.py, beside this script

from qdistill.cli.commands import parse_teacher_epochs
from qdistill.experiments.executors import usable_cpus
from qdistill.experiments.grids import GridOptions
from qdistill.experiments.reproduce import run_grid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=usable_cpus())
    ap.add_argument("--teacher-epochs", default="lenet=10,alexnet=1,ensemble=1")
    ap.add_argument("--head", default="paper")
    ap.add_argument("--only", default=PAPER_RUNS, help=f"run-id glob (default {PAPER_RUNS!r})")
    args = ap.parse_args()
    opt = GridOptions(teacher_epochs=parse_teacher_epochs(args.teacher_epochs), only=args.only,
                      head=args.head)
    runs = grid_runs(opt)  # teachers cached first, not timed
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        run_grid("paper-v1", opt, Path(tmp), workers=args.workers)
        minutes = (time.perf_counter() - t) / 60
    print(f"paper-v1 student grid: {len(runs)} runs, {args.workers} worker(s), "
          f"{minutes:.1f} min ({60 * minutes / len(runs):.1f} s per run of wall time); "
          f"target: 72 runs < 15 min")


if __name__ == "__main__":
    main()
