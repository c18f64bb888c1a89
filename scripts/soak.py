#!/usr/bin/env python
"""Soak test: kill ``qdistill reproduce`` at random instants, restart it until it
finishes, and check that the interrupted runs end bit-identical to an uninterrupted one.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/soak.py --iterations 5 --seed 0 \\
        --min-delay 2 --max-delay 40 --workers 1

What one invocation does:

1. Runs the command once without interruption (the reference), in its own output
   directory and its own ``QDISTILL_CACHE_DIR``. The default command is a small slice
   of the quick reproduction::

       qdistill reproduce paper-v1 --quick --only 'mnist_0-5_q3_*_s0' --epochs 3 \\
           --teacher-epochs 1 --workers 1 --out OUT

   i.e. a LeNet-5 teacher (trained into the cache) and two paper-v1 students (no
   teacher, LeNet KD) on MNIST 0-5; ``--only '*'`` and ``--epochs 10`` give the whole
   ``--quick`` grid (4 students, ~5 min per run on 2 cores).
2. ``--iterations`` times: starts the same command in a fresh output and cache
   directory, sends SIGKILL to its process group (the command and any worker
   processes it started) after a random delay in [--min-delay, --max-delay] seconds,
   restarts it, and so on until one attempt finishes by itself. Kills land anywhere:
   while MNIST is decoded and cached, while the teacher trains, in the middle of a
   student epoch, between the files of a checkpoint, while the report is written.
3. Compares every run of the finished chain with the reference: each student's
   ``metrics.jsonl``, ``result.json``, ``last.json`` and ``row.json`` (with the
   wall-clock ``seconds`` fields removed), ``best.json`` and ``best.safetensors``
   (bytes), ``runs.csv`` (without its ``seconds`` column), and the cached teacher's
   checkpoint and metrics. Also checks that nothing was lost (every run of the reference
   is there and finished), that no lock file is left and that the final attempt exited 0.

Prints one line per attempt and a summary; exit status 1 if anything differed or was
lost. CPU only: bit-identical results are promised on CPU, not across GPU kernels.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def command(args: argparse.Namespace, out: Path) -> list[str]:
    return [sys.executable, "-m", "qdistill", "reproduce", "paper-v1", "--quick",
            "--only", args.only, "--epochs", str(args.epochs),
            "--teacher-epochs", str(args.teacher_epochs), "--workers", str(args.workers),
            "--device", "cpu", "--out", str(out)]


def environment(cache: Path) -> dict[str, str]:
    env = dict(os.environ, QDISTILL_CACHE_DIR=str(cache), QDISTILL_OFFLINE="1")
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def start(args: argparse.Namespace, out: Path, cache: Path, log: Path) -> subprocess.Popen:
    with open(log, "ab") as f:  # the child keeps its own descriptor
        return subprocess.Popen(command(args, out), stdout=f, stderr=subprocess.STDOUT,
                                env=environment(cache), cwd=ROOT, start_new_session=True)


def _strip_seconds(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip_seconds(v) for k, v in obj.items() if k != "seconds"}
    if isinstance(obj, list):
        return [_strip_seconds(v) for v in obj]
    return obj


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_fingerprint(run: Path, files: tuple[str, ...]) -> dict[str, Any]:
    """What a run directory holds that must not depend on interruptions."""
    fp: dict[str, Any] = {}
    for name in files:
        path = run / name
        if not path.is_file():
            fp[name] = "MISSING"
        elif name.endswith(".jsonl"):
            fp[name] = [_strip_seconds(json.loads(line))
                        for line in path.read_text().splitlines()]
        elif name.endswith(".json") and name != "best.json":
            fp[name] = _strip_seconds(json.loads(path.read_text()))
        else:  # best.json and the weights: byte for byte
            fp[name] = _sha(path)
    return fp


STUDENT_FILES = ("metrics.jsonl", "result.json", "last.json", "row.json", "best.json",
                 "best.safetensors")
TEACHER_FILES = ("metrics.jsonl", "last.json", "best.json", "best.safetensors")


def fingerprint(out: Path, cache: Path) -> dict[str, dict[str, Any]]:
    """{run name: its fingerprint} for every student run, the teachers and runs.csv."""
    runs: dict[str, dict[str, Any]] = {}
    for run in sorted((out / "runs").iterdir()) if (out / "runs").is_dir() else []:
        runs[f"student {run.name}"] = run_fingerprint(run, STUDENT_FILES)
    teachers = cache / "teachers"
    for run in sorted(teachers.iterdir()) if teachers.is_dir() else []:
        runs[f"teacher {run.name}"] = run_fingerprint(run, TEACHER_FILES)
    if (out / "runs.csv").is_file():
        with open(out / "runs.csv", newline="") as f:
            rows = [{k: v for k, v in row.items() if k != "seconds"}
                    for row in csv.DictReader(f)]
        runs["runs.csv"] = {"rows": rows}
    return runs


def phase(out: Path, cache: Path, n_students: int) -> str:
    """Where a killed attempt was, judged from what it left on disk."""
    teachers = list((cache / "teachers").glob("*/best.json"))
    done = len(list((out / "runs").glob("*/row.json")))
    if not out.exists():
        return "starting"
    if not (cache / "mnist" / "meta.json").is_file():
        return "loading data"
    if not teachers:
        return "teacher"
    if done < n_students:
        return f"students ({done}/{n_students} done)"
    return "report"


def mid_run(out: Path, cache: Path) -> list[str]:
    """Runs a kill left between epochs: a checkpoint (last.json) but not finished."""
    found = []
    for run in [*(out / "runs").glob("*"), *(cache / "teachers").glob("*")]:
        last, done = run / "last.json", run / ("row.json" if run.parent.name == "runs"
                                               else "best.json")
        if last.is_file() and not done.is_file():
            found.append(f"{run.name} after epoch {json.loads(last.read_text())['epoch']}")
    return found


def leftovers(*dirs: Path) -> list[str]:
    """Temp files of interrupted atomic writes (harmless, but counted)."""
    return [str(p) for d in dirs if d.is_dir() for p in d.rglob(".*.tmp")]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iterations", type=int, default=5,
                   help="kill/restart chains, each compared with the reference (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill instants")
    p.add_argument("--min-delay", type=float, default=2.0,
                   help="earliest kill, seconds after a (re)start (default 2)")
    p.add_argument("--max-delay", type=float, default=40.0,
                   help="latest kill, seconds after a (re)start (default 40; it must "
                        "exceed startup + one epoch, or a chain never gets past it)")
    p.add_argument("--workers", type=int, default=1, help="reproduce --workers (default 1)")
    p.add_argument("--only", default="mnist_0-5_q3_*_s0",
                   help="reproduce --only glob (default: seed 0, no teacher and LeNet)")
    p.add_argument("--epochs", type=int, default=3, help="student epochs (default 3)")
    p.add_argument("--teacher-epochs", type=int, default=1, help="teacher epochs (default 1)")
    p.add_argument("--max-attempts", type=int, default=40,
                   help="give up on a chain after this many attempts (default 40)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args()
    if not 0 < args.min_delay <= args.max_delay:
        p.error("need 0 < --min-delay <= --max-delay")
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="qdistill-soak-"))
    print(f"work directory: {work}")
    print("command: python " + shlex.join(command(args, Path("OUT"))[1:]))

    t0 = time.perf_counter()
    ref_out, ref_cache = work / "reference" / "out", work / "reference" / "cache"
    rc = subprocess.run(command(args, ref_out), env=environment(ref_cache), cwd=ROOT,
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ref_seconds = time.perf_counter() - t0
    if rc.returncode != 0:
        print(f"the reference run failed (exit {rc.returncode}):\n{rc.stderr.decode()[-2000:]}")
        return 1
    reference = fingerprint(ref_out, ref_cache)
    n_students = sum(k.startswith("student ") for k in reference)
    print(f"reference: {len(reference) - 1} runs ({n_students} students) in "
          f"{ref_seconds:.0f} s")

    kills, compared, mismatches, lost, phases = 0, 0, [], [], {}
    resumed = 0  # runs restarted from an epoch checkpoint (a kill left them mid-training)
    temp_files = 0
    for it in range(1, args.iterations + 1):
        out, cache = work / f"chain{it}" / "out", work / f"chain{it}" / "cache"
        log = work / f"chain{it}" / "log.txt"
        log.parent.mkdir(parents=True)
        final_rc, chain_kills = None, 0
        for attempt in range(1, args.max_attempts + 1):
            delay = rng.uniform(args.min_delay, args.max_delay)
            proc = start(args, out, cache, log)
            try:
                final_rc = proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()  # reap it, as a shell would: a zombie's pid would look alive
                kills += 1
                chain_kills += 1
                where = phase(out, cache, n_students)
                resumable = mid_run(out, cache)
                resumed += len(resumable)
                if resumable:
                    where += "; to resume: " + ", ".join(resumable)
                phases[where.split(" (")[0]] = phases.get(where.split(" (")[0], 0) + 1
                print(f"  chain {it} attempt {attempt}: killed after {delay:5.1f} s "
                      f"({where})", flush=True)
                continue
            print(f"  chain {it} attempt {attempt}: finished (exit {final_rc}) within "
                  f"{delay:.1f} s", flush=True)
            break
        if final_rc != 0:
            lost.append(f"chain {it}: never finished cleanly (last exit {final_rc}); "
                        f"see {log}")
            continue
        got = fingerprint(out, cache)
        for name, want in reference.items():
            if name not in got:
                lost.append(f"chain {it}: {name} missing")
                continue
            for file, value in want.items():
                if got[name].get(file) != value:
                    mismatches.append(f"chain {it}: {name}/{file}")
            compared += name != "runs.csv"
        extra = sorted(set(got) - set(reference))
        lost += [f"chain {it}: unexpected {name}" for name in extra]
        if (out / ".lock").exists():
            lost.append(f"chain {it}: lock file left behind")
        temp_files += len(leftovers(out, cache))
        print(f"chain {it}: {chain_kills} kill(s), {len(reference) - 1} runs compared, "
              f"{sum(m.startswith(f'chain {it}:') for m in mismatches)} mismatches",
              flush=True)

    minutes = (time.perf_counter() - t0) / 60
    print()
    print(f"soak summary ({minutes:.1f} min, seed {args.seed}, delays "
          f"{args.min_delay:g}-{args.max_delay:g} s, workers {args.workers}):")
    print(f"  kills survived:  {kills} (while: " + ", ".join(
        f"{k} {v}" for k, v in sorted(phases.items())) + ")")
    print(f"  resumes:         {resumed} (a teacher or student restarted from its last "
          "epoch checkpoint)")
    print(f"  runs compared:   {compared} (in {args.iterations} chains, each against "
          f"the uninterrupted reference)")
    print(f"  mismatches:      {len(mismatches)}")
    for m in mismatches:
        print(f"    {m}")
    print(f"  lost:            {len(lost)}" + ("" if lost else " (nothing lost)"))
    for m in lost:
        print(f"    {m}")
    print(f"  temp files left by interrupted atomic writes: {temp_files}")
    if not args.keep and not mismatches and not lost:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"  kept: {work}")
    return 1 if mismatches or lost else 0


if __name__ == "__main__":
    sys.exit(main())
