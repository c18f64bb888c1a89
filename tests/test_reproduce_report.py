"""Grid reporting: confidence intervals, tables, the lock file."""

import logging
import math
import os
import subprocess
import sys

import pytest

from qdistill.errors import QdistillError
from qdistill.experiments.runner import DirLock
from qdistill.reporting import tables as report


def test_t_interval_closed_form():
    # n = 3, mean 2, sd 1: half width = t(0.975, 2) * 1 / sqrt(3) = 4.302653 / 1.732051.
    m, lo, hi = report.t_interval([1.0, 2.0, 3.0])
    assert m == 2.0
    assert hi - m == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert m - lo == pytest.approx(hi - m)
    assert math.isnan(report.t_interval([1.0])[1])


def _rows():
    rows = []
    for teacher, accs in (("none", [0.90, 0.92]), ("lenet", [0.93, 0.96])):
        for seed, acc in enumerate(accs):
            rows.append({"run_id": f"{teacher}{seed}", "setting": "s", "teacher": teacher,
                         "seed": seed, "test_acc": acc, "params_classical": 10,
                         "params_quantum": 0})
    return rows


def test_tables_and_paired_gain():
    rows = _rows()
    table = report.accuracy_table(rows, ["none", "lenet"], {"s": {"none": 80.0}})
    assert "91.00 ± 1.41 (n=2) (paper 80.00)" in table
    g = report.gains(rows, ["none", "lenet"])
    m, lo, hi, n = g[("s", "lenet")]
    assert (m, n) == (pytest.approx(3.5), 2)  # diffs 3 and 4 points
    assert "+3.50" in report.gain_table(rows, ["none", "lenet"], {})


def test_lock_refuses_second_process_and_takes_over_stale(tmp_path):
    with DirLock(tmp_path):
        # Another live process holding the lock: simulate with our parent's pid.
        pass
    (tmp_path / ".lock").write_text(str(os.getppid()))
    with pytest.raises(QdistillError, match="another qdistill process"):
        DirLock(tmp_path).__enter__()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (tmp_path / ".lock").write_text(dead)
    with DirLock(tmp_path):
        assert (tmp_path / ".lock").read_text() == str(os.getpid())
    assert not (tmp_path / ".lock").exists()


def _tiny_grid(opt):
    """Digits, a 4-qubit fully quantum student, no teacher vs an MLP teacher, 2 seeds."""
    from qdistill.config import DataConfig, DistillConfig, KDConfig, StudentConfig, TrainConfig
    from qdistill.experiments.grids import Run

    runs = []
    for teacher in ("none", "mlp"):
        for seed in range(2):
            cfg = DistillConfig(
                student=StudentConfig(name="quantum", qubits=4, reduction="avgpool",
                                      layers=1),
                kd=KDConfig(teacher=teacher, teacher_epochs=1),
                data=DataConfig(dataset="digits", classes="0-3", train_per_class=30,
                                test_per_class=20, val_per_class=10),
                train=TrainConfig(epochs=1, batch_size=8, seed=seed, device="cpu"))
            runs.append(Run(f"{teacher}_s{seed}", "digits 0-3", cfg))
    return runs


def test_grid_runs_reports_and_resumes(tmp_path, monkeypatch, caplog):
    from qdistill.experiments import grids, reproduce

    monkeypatch.setitem(grids.GRIDS, "tiny", _tiny_grid)
    monkeypatch.setitem(grids.PAPER_TABLES, "tiny", lambda: {"digits 0-3": {"none": 50.0}})
    caplog.set_level(logging.INFO, logger="qdistill")
    rows = reproduce.run_grid("tiny", grids.GridOptions(), tmp_path, workers=1)
    assert len(rows) == 4
    for name in ("runs.csv", "table.md", "accuracy.png", "curves.png", "gains.png"):
        assert (tmp_path / name).is_file(), name
    table = (tmp_path / "table.md").read_text()
    assert "(paper 50.00)" in table and "mlp gain" in table
    assert len((tmp_path / "runs.csv").read_text().splitlines()) == 5
    # A second invocation redoes nothing, its finished runs' teachers not even looked up.
    from qdistill.experiments import runner

    def no_teacher(*_args):
        raise AssertionError("a finished run's teacher was prepared")

    monkeypatch.setattr(runner, "resolve_teacher", no_teacher)
    again = reproduce.run_grid("tiny", grids.GridOptions(), tmp_path, workers=1)
    assert any("4 runs, 4 done, 0 to run" in m for m in caplog.messages)
    assert sorted(r["test_acc"] for r in again) == sorted(r["test_acc"] for r in rows)
    with pytest.raises(QdistillError, match="unknown grid"):
        reproduce.run_grid("nope", grids.GridOptions(), tmp_path)


def test_grid_definitions_match_the_paper():
    from qdistill.experiments.grids import GridOptions, paper_v1_grid, paper_v2_grid

    full = paper_v1_grid(GridOptions())
    paper_runs = [r for r in full if r.cfg.student.name == "paper-v1"]
    assert len(paper_runs) == 2 * 3 * 4 * 3  # datasets x settings x teachers x seeds = 72
    # The extra fully quantum row: none and LeNet per setting, no classical parameter.
    extra = [r for r in full if r.cfg.student.name == "quantum"]
    assert len(extra) == 2 * 3 * 2 * 3
    assert {r.cfg.kd.teacher for r in extra} == {"none", "lenet"}
    assert {(r.cfg.student.qubits, r.cfg.data.classes) for r in extra} == {
        (3, "0-5"), (3, "0-7"), (4, "0-7")}
    assert all("fully quantum" in r.setting and "_quantum_" in r.run_id for r in extra)
    assert len({r.run_id for r in full}) == len(full)
    cfg = full[0].cfg
    assert (cfg.data.train_per_class, cfg.data.test_per_class) == (150, 150)
    assert (cfg.train.batch_size, cfg.train.epochs, cfg.train.lr) == (1, 10, 1e-3)
    assert (cfg.kd.temperature, cfg.kd.alpha, cfg.kd.variant) == (3.0, 0.9, "paper")
    shots = paper_v1_grid(GridOptions(shots=True))
    assert {r.cfg.student.shots for r in shots} == {5000, 3000, 2000}
    # the paper's angle range; the fully quantum row takes no angles
    assert {r.cfg.student.angles for r in full if r.cfg.student.name == "paper-v1"} == {"pi"}
    assert {r.cfg.student.angles for r in full if r.cfg.student.name == "quantum"} == {None}
    half = paper_v1_grid(GridOptions(angles="half-pi"))
    assert {r.cfg.student.angles for r in half if r.cfg.student.name == "paper-v1"} == {
        "half-pi"}
    assert {r.cfg.student.angles for r in half if r.cfg.student.name == "quantum"} == {None}
    assert len(paper_v1_grid(GridOptions(quick=True))) == 4
    v2 = paper_v2_grid(GridOptions())
    assert {r.cfg.student.qubits for r in v2} == {4, 8}
    assert {r.cfg.data.classes for r in v2} == {None}  # 10 classes


def test_finished_run_with_other_settings_is_not_reused(tmp_path, monkeypatch):
    from qdistill.experiments import grids, reproduce

    def grid(opt):
        runs = _tiny_grid(opt)[:1]
        runs[0].cfg.train.lr = opt.epochs and 1e-2 or 1e-3  # settings vary with options
        return runs

    monkeypatch.setitem(grids.GRIDS, "tiny1", grid)
    monkeypatch.setitem(grids.PAPER_TABLES, "tiny1", dict)
    reproduce.run_grid("tiny1", grids.GridOptions(), tmp_path)
    with pytest.raises(QdistillError, match="other settings"):
        reproduce.run_grid("tiny1", grids.GridOptions(epochs=1), tmp_path)


def test_only_filter_is_an_anchored_glob(tmp_path):
    from qdistill.experiments import grids, reproduce

    opt = grids.GridOptions(only="mnist_0-5_q3_*")
    with pytest.raises(QdistillError, match="no run of paper-v1 matches"):
        reproduce.run_grid("paper-v1", grids.GridOptions(only="nothing*"), tmp_path)
    import fnmatch
    ids = [r.run_id for r in grids.paper_v1_grid(opt)]
    kept = [i for i in ids if fnmatch.fnmatchcase(i, opt.only)]
    assert kept and all(i.startswith("mnist_") for i in kept)  # not fashion-mnist_...


def test_one_teacher_at_two_training_lengths_gets_two_columns(tmp_path, monkeypatch):
    """1- and 10-epoch AlexNet teachers in one grid directory: two labels, never one cell
    (the paper's number goes with the 10-epoch teacher, as the paper trained it)."""
    from qdistill.experiments import grids, reproduce

    rows = []
    for teacher, t_epochs, accs in (("none", None, [0.80, 0.82]), ("alexnet", 1, [0.70, 0.72]),
                                    ("alexnet", 10, [0.90, 0.86])):
        for seed, acc in enumerate(accs):
            rows.append({"run_id": f"{teacher}{t_epochs}_{seed}", "grid": "", "setting": "s",
                         "dataset": "mnist", "classes": "0-5", "qubits": 3,
                         "student": "paper-v1", "teacher": teacher, "seed": seed,
                         "test_acc": acc, "val_acc": acc, "best_epoch": 2,
                         "paper_metric_best_test_acc": acc, "teacher_test_acc": 0.9,
                         "teacher_epochs": t_epochs, "params_classical": 10,
                         "params_quantum": 0, "seconds": 1.0,
                         "test_acc_per_epoch": [acc, acc], "val_acc_per_epoch": [acc, acc]})
    paper = {"s": {"none": 81.0, "alexnet": 85.0}}
    relabelled, table = reproduce.by_teacher_epochs(rows, paper)
    assert {r["teacher"] for r in relabelled} == {"none", "alexnet-te1", "alexnet-te10"}
    assert table == {"s": {"none": 81.0, "alexnet-te10": 85.0}}
    assert {r["teacher"] for r in rows} == {"none", "alexnet"}  # the rows themselves kept
    assert reproduce.by_teacher_epochs(rows[:4], paper) == (rows[:4], paper)  # one length

    monkeypatch.setitem(grids.GRIDS, "tiny", lambda opt: [])
    monkeypatch.setitem(grids.PAPER_TABLES, "tiny", lambda: paper)
    text = reproduce.write_report("tiny", rows, tmp_path, grids.GridOptions(), seconds=1.0)
    gains = text.split("## KD gain")[1].split("##")[0]
    # paired gains: te1 (0.70 - 0.80, 0.72 - 0.82) = -10.0, te10 (+10, +4) = +7.0
    assert "-10.0" in gains and "+7.0" in gains
    header = next(line for line in text.splitlines() if line.startswith("| setting"))
    assert header.index("none") < header.index("alexnet-te1 ") < header.index("alexnet-te10")
