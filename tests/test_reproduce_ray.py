"""Grids on Ray: the same table as the local pool; a killed task is retried and resumes.

One local Ray instance (2 CPUs) serves the whole module.
"""

import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from test_reproduce_report import _tiny_grid

from qdistill import cli
from qdistill.config import DataConfig, DistillConfig, KDConfig, StudentConfig, TrainConfig
from qdistill.errors import QdistillError
from qdistill.experiments import executors, grids, reproduce, runner


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray")
    temp_dir = executors.init_ray(num_cpus=2)  # the product's own local start-up
    assert temp_dir and Path(temp_dir).parent == Path(executors.tempfile.gettempdir())
    assert ray.cluster_resources()["CPU"] == 2
    yield ray
    ray.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(autouse=True)
def two_usable_cpus(monkeypatch):
    """Each run gets usable cores // workers threads and asks Ray for that many CPUs. The
    machine's own core count must not leak in: on this module's 2-CPU Ray instance a
    16-core machine's 16 // 2 = 8 CPUs per run would never be scheduled (and the log
    checked below says 1 CPU per run)."""
    monkeypatch.setattr(runner, "usable_cpus", lambda: 2)


def _same(row):
    return {k: v for k, v in row.items() if k != "seconds"}  # wall time differs


def _table(out):
    # The last line holds the options and this invocation's wall time.
    return (out / "table.md").read_text().splitlines()[:-1]


def test_ray_gives_the_local_table_bit_for_bit(tmp_path, monkeypatch, ray_instance, caplog):
    monkeypatch.setitem(grids.GRIDS, "tiny", _tiny_grid)
    monkeypatch.setitem(grids.PAPER_TABLES, "tiny", lambda: {"digits 0-3": {"none": 50.0}})
    opt = grids.GridOptions()
    caplog.set_level(logging.INFO, logger="qdistill")
    local = reproduce.run_grid("tiny", opt, tmp_path / "local", workers=2)
    on_ray = reproduce.run_grid("tiny", opt, tmp_path / "ray", workers=2, executor="ray")
    assert any("4 to run on Ray (1 CPU per run)" in m for m in caplog.messages)
    assert len(local) == len(on_ray) == 4
    by_id = {r["run_id"]: _same(r) for r in local}
    assert by_id == {r["run_id"]: _same(r) for r in on_ray}  # floats compared exactly
    assert all(0 < r["test_acc"] <= 1 for r in on_ray)
    assert {r["teacher"] for r in on_ray} == {"none", "mlp"}
    assert _table(tmp_path / "ray") == _table(tmp_path / "local")
    assert "mlp gain" in "\n".join(_table(tmp_path / "ray"))
    for name in ("runs.csv", "curves.png", "gains.png"):
        assert (tmp_path / "ray" / name).is_file(), name


def _slow_grid(opt):
    """One run of 2 epochs of about a second each (batch 1, 100 digits per class): long
    enough to kill its worker in the second epoch."""
    cfg = DistillConfig(
        student=StudentConfig(name="quantum", qubits=4, reduction="avgpool", layers=1),
        kd=KDConfig(teacher="none"),
        data=DataConfig(dataset="digits", classes="0-9", train_per_class=100,
                        test_per_class=20),
        train=TrainConfig(epochs=2, batch_size=1, seed=0, device="cpu"))
    return [grids.Run("slow_s0", "digits 0-9", cfg)]


def _task_pids(name):
    """Ray workers now running task ``name`` on this test's own instance (their parent,
    the raylet, is a child of this process)."""
    pids = []
    for entry in os.listdir("/proc"):
        try:
            title = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")[0]
            ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            grand = int(Path(f"/proc/{ppid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if title == f"ray::{name}".encode() and grand == os.getpid():
            pids.append(int(entry))
    return pids


def _kill_after_first_epoch(run_dir, seen):
    """Wait for the run's epoch-1 checkpoint, note it, then SIGKILL the task's worker."""
    deadline = time.time() + 120
    while time.time() < deadline and "pid" not in seen:
        last = run_dir / "last.json"
        pids = _task_pids("_run_one")
        if pids and last.is_file() and json.loads(last.read_text())["epoch"] >= 1:
            seen["history"] = json.loads(last.read_text())["history"]
            seen["pid"] = pids[0]
            os.kill(pids[0], signal.SIGKILL)
            seen["finished_before_kill"] = (run_dir / "result.json").exists()
        time.sleep(0.02)


@pytest.mark.skipif(sys.platform != "linux", reason="/proc and SIGKILL")
def test_killed_task_is_retried_and_resumes(tmp_path, monkeypatch, ray_instance):
    monkeypatch.setitem(grids.GRIDS, "slow", _slow_grid)
    monkeypatch.setitem(grids.PAPER_TABLES, "slow", dict)
    opt = grids.GridOptions()
    [whole] = reproduce.run_grid("slow", opt, tmp_path / "whole")

    run_dir = tmp_path / "ray" / "runs" / "slow_s0"
    seen: dict = {}
    killer = threading.Thread(target=_kill_after_first_epoch, args=(run_dir, seen))
    killer.start()
    try:
        [resumed] = reproduce.run_grid("slow", opt, tmp_path / "ray", workers=2,
                                       executor="ray")
    finally:
        killer.join()
    assert "pid" in seen and not seen["finished_before_kill"], "the kill must land mid-run"
    assert not _task_pids("_run_one")
    # Ray ran the task again (max_retries) and it went on from the checkpoint: the epochs
    # done before the kill are kept as they were (timings included), not redone ...
    done = json.loads((run_dir / "result.json").read_text())["history"]
    assert len(seen["history"]) == 1
    assert done[:len(seen["history"])] == seen["history"]
    # ... and the run ends with the numbers of the uninterrupted one.
    assert _same(resumed) == _same(whole)


def test_a_failing_run_is_reported_as_by_the_local_pool(tmp_path, monkeypatch,
                                                        ray_instance):
    def bad_grid(opt):
        [run] = _tiny_grid(opt)[:1]  # no teacher; the error comes from the worker
        run.cfg.student.reduction = "nope"
        return [run]

    monkeypatch.setitem(grids.GRIDS, "bad", bad_grid)
    monkeypatch.setitem(grids.PAPER_TABLES, "bad", dict)
    messages = []
    for executor in ("local", "ray"):
        with pytest.raises(QdistillError) as err:
            reproduce.run_grid("bad", grids.GridOptions(), tmp_path / executor,
                               executor=executor)
        messages.append(str(err.value))
    assert messages[0] == messages[1]  # the run's own one-line error, not Ray's wrapper
    assert messages[1].startswith("1 run(s) failed, e.g. none_s0: unknown reduction 'nope'")


def test_gpu_runs_need_a_gpu_in_the_ray_instance(ray_instance):
    if ray_instance.cluster_resources().get("GPU"):
        pytest.skip("this machine has a GPU")
    pool = executors.make_executor("ray", workers=1, threads=1, device="cuda")
    with pytest.raises(QdistillError, match="local Ray instance sees no GPU"):
        list(pool.run(runner._run_one, []))  # an error, not a wait for a GPU forever
    with pytest.raises(QdistillError, match="use --device cuda"):
        executors.make_executor("ray", workers=1, threads=1, device="cuda:1")


def test_missing_ray_is_one_clear_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    out = tmp_path / "out"
    rc = cli.main(["reproduce", "paper-v1", "--quick", "--executor", "ray",
                   "--out", str(out)])
    assert rc == 2
    assert capsys.readouterr().err == (
        "qdistill: error: --executor ray needs Ray: pip install 'qdistill[ray]'\n")
    assert not out.exists()  # refused before any teacher was trained
    with pytest.raises(QdistillError, match="--address is for --executor ray"):
        executors.make_executor("local", 1, 1, address="auto")
    with pytest.raises(QdistillError, match="unknown executor 'dask'"):
        executors.make_executor("dask", 1, 1)
