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
import fnmatch
import json
import tempfile
import time
from pathlib import Path

from qdistill.cli.commands import parse_teacher_epochs
from qdistill.config import to_dict
from qdistill.distillation.run import resolve_teacher, teacher_config_for
from qdistill.experiments.executors import usable_cpus
from qdistill.experiments.grids import GridOptions, paper_v1_grid
from qdistill.experiments.reproduce import run_grid
from qdistill.training.tasks import build_task

# The paper's 72 runs: every paper-v1 student, not the fully quantum extra row.
PAPER_RUNS = "*_q?_[nlae]*"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=usable_cpus())
    ap.add_argument("--teacher-epochs", default="lenet=10,alexnet=1,ensemble=1")
    ap.add_argument("--head", default="paper")
    ap.add_argument("--only", default=PAPER_RUNS, help=f"run-id glob (default {PAPER_RUNS!r})")
    args = ap.parse_args()
    opt = GridOptions(teacher_epochs=parse_teacher_epochs(args.teacher_epochs), only=args.only,
                      head=args.head)
    runs = [r for r in paper_v1_grid(opt) if fnmatch.fnmatchcase(r.run_id, args.only)]
    seen = set()
    for r in runs:  # teachers: cached or trained now, outside the timing
        key = json.dumps(to_dict(teacher_config_for(r.cfg)), sort_keys=True)
        if r.cfg.kd.teacher != "none" and key not in seen:
            seen.add(key)
            resolve_teacher(r.cfg, build_task(r.cfg.data, r.cfg.train.seed))
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        run_grid("paper-v1", opt, Path(tmp), workers=args.workers)
        minutes = (time.perf_counter() - t) / 60
    print(f"paper-v1 student grid: {len(runs)} runs, {args.workers} worker(s), "
          f"{minutes:.1f} min ({60 * minutes / len(runs):.1f} s per run of wall time); "
          f"target: 72 runs < 15 min")


if __name__ == "__main__":
    main()
