"""The aggregate numbers docs/reproduction.md quotes from a committed paper-v1 grid.

Reads ``DIR/runs/*/row.json`` (trains nothing) and prints, per dataset, for the hybrid
paper-v1 students (the fully quantum row is left out: it has its own paragraph):

- every run's mean test accuracy and how many ended at chance (test accuracy < 1.5 / K,
  as the tables' "[k at chance]"), per teacher and for all distilled runs;
- the KD gain, teacher minus no teacher paired by setting and seed, in points: mean,
  range, how many pairs are positive, and the mean over the pairs where neither run
  ended at chance.

A teacher trained for two lengths in one directory is two teachers here
(``alexnet-te1``, ``alexnet-te10``), as in the tables.

With ``--robustness``, from ``DIR/robustness/robustness.csv`` instead (``qdistill
reproduce ... --robustness``): per student and setting, the accuracy each run loses
against its own exact evaluation (mean over the evaluation seeds), in points: mean and
range over the runs that are not at chance exactly.

    python scripts/grid_summary.py results/paper-v1-logprob
    python scripts/grid_summary.py results/paper-v1 results/paper-v1-halfpi --only '*_q?_[nl]*'
    python scripts/grid_summary.py results/paper-v1-logprob --robustness
"""

from __future__ import annotations

import argparse
import fnmatch
import json
from collections import defaultdict
from pathlib import Path

from qdistill.experiments.reproduce import by_teacher_epochs
from qdistill.experiments.robustness import _aggregate, read_robustness
from qdistill.reporting.tables import collapsed


def load(directory: Path, only: str | None) -> list[dict]:
    rows = [json.loads(p.read_text()) for p in sorted(directory.glob("runs/*/row.json"))]
    rows = [r for r in rows if r["params_classical"] > 0  # the hybrid students only
            and (only is None or fnmatch.fnmatch(r["run_id"], only))]
    if not rows:
        raise SystemExit(f"{directory}: no hybrid paper-v1 runs (runs/*/row.json)")
    return by_teacher_epochs(rows, {})[0]


def _line(label: str, runs: list[dict], diffs: list[tuple[float, bool]]) -> str:
    acc = sum(100 * r["test_acc"] for r in runs) / len(runs)
    text = (f"  {label:<14} runs {len(runs):>3}, mean acc {acc:6.2f}, "
            f"at chance {sum(map(collapsed, runs)):>2}")
    if diffs:
        d = [g for g, _ in diffs]
        clean = [g for g, dead in diffs if not dead]
        text += (f" | gain mean {sum(d) / len(d):+6.2f}, range {min(d):+.2f} to "
                 f"{max(d):+.2f}, positive {sum(g > 0 for g in d)} of {len(d)}")
        if clean:
            text += (f"; without a collapse: {len(clean)} pairs, mean "
                     f"{sum(clean) / len(clean):+.2f} (range {min(clean):+.2f} to "
                     f"{max(clean):+.2f})")
    return text


def summary(rows: list[dict]) -> str:
    base = {(r["setting"], r["seed"]): r for r in rows if r["teacher"] == "none"}
    out = []
    for ds in sorted({r["dataset"] for r in rows}):
        mine = [r for r in rows if r["dataset"] == ds]
        out.append(f"{ds}:")
        by_teacher: dict[str, list[dict]] = defaultdict(list)
        for r in mine:
            by_teacher[r["teacher"]].append(r)
        distilled = [r for r in mine if r["teacher"] != "none"]
        groups = [("all runs", mine, False), ("all distilled", distilled, True)]
        groups += [(t, by_teacher[t], t != "none") for t in sorted(by_teacher)]
        for label, runs, paired in groups:
            if not runs:  # e.g. --only kept the baselines alone
                continue
            diffs = []
            for r in runs if paired else []:
                b = base.get((r["setting"], r["seed"]))
                if b is not None:
                    diffs.append((100 * (r["test_acc"] - b["test_acc"]),
                                  collapsed(r) or collapsed(b)))
            out.append(_line(label, runs, diffs))
    return "\n".join(out)


def robustness(directory: Path) -> str:
    path = directory / "robustness" / "robustness.csv"
    if not path.is_file():
        raise SystemExit(f"{path}: not found (qdistill reproduce ... --robustness writes it)")
    rows = read_robustness(path)
    classes = {r["run"]: r["classes"] for r in rows}
    out = []
    for student in dict.fromkeys(r["student"] for r in rows):
        # (setting, run) -> the run's accuracies over the evaluation seeds
        settings, runs, cells = _aggregate([r for r in rows if r["student"] == student], "run")
        mean = {k: 100 * sum(v) / len(v) for k, v in cells.items()}
        runs = [run for run in runs if ("exact", run) in mean and not collapsed(
            {"test_acc": mean[("exact", run)] / 100, "classes": classes[run]})]
        out.append(f"{student}: {len(runs)} runs not at chance")
        for label in settings:
            if label == "exact":
                continue
            loss = [mean[("exact", run)] - mean[(label, run)] for run in runs
                    if (label, run) in mean]
            out.append(f"  {label:<34} loss mean {sum(loss) / len(loss):+.2f}, range "
                       f"{min(loss):+.2f} to {max(loss):+.2f}, unchanged in "
                       f"{sum(abs(x) < 1e-9 for x in loss)} of {len(loss)}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dirs", nargs="+", type=Path, help="grid directories (DIR/runs/*/row.json)")
    ap.add_argument("--only", help="run ids matching this shell pattern only")
    ap.add_argument("--robustness", action="store_true",
                    help="summarise DIR/robustness/robustness.csv instead")
    args = ap.parse_args(argv)
    for d in args.dirs:
        print(f"== {d}")
        print(robustness(d) if args.robustness else summary(load(d, args.only)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
