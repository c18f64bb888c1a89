"""The KD study (docs/kd-study.md) as runs: the protocol's arms, seeds and budgets; the
short-schedule arm read from a longer run is that run; the quick study end to end with
its primary comparison recomputed from the runs' own files."""

import json
from collections import Counter

import pytest

from qdistill.cli.parser import main
from qdistill.config import DistillConfig
from qdistill.distillation.run import run_distill
from qdistill.experiments.kd_study import e1_runs, e2_runs, e3_runs, e4_runs
from qdistill.experiments.plan import GridOptions
from qdistill.reporting.tables import t_interval
from qdistill.training.fit import cpu_threads


def _arms(runs):
    return Counter(r.run_id.rsplit("_s", 1)[0] for r in runs)


def test_e1_is_the_protocol():
    runs = e1_runs(GridOptions())
    arms = _arms(runs)
    assert len(arms) == 2 * 12 and set(arms.values()) == {5}  # 2 datasets, 12 arms, 5 seeds
    for r in runs:
        cfg = r.cfg
        assert cfg.data.classes is None and cfg.data.train_per_class == 50
        assert cfg.data.val_per_class == 50 and cfg.train.batch_size == 32
        assert (cfg.student.name, cfg.student.qubits, cfg.student.reduction,
                cfg.student.encoding) == ("paper-v2", 4, "fc", "amplitude")
        transfer = cfg.data.transfer == "unlabelled:500"
        # equal samples: 20 epochs of 550/class, or 220 of the 50 labelled per class
        assert cfg.train.epochs == (20 if transfer else 220)
        arm = r.run_id.split("_")[2]
        assert cfg.kd.teacher == ("none" if arm == "CE" else "lenet")
        assert cfg.kd.variant == ("pseudo" if arm.startswith("PL") else "hinton")
    primary = [r.cfg.kd for r in runs if "_KD+T_T4_a0.9_" in r.run_id]
    assert {(k.temperature, k.alpha) for k in primary} == {(4.0, 0.9)}


def test_e2_and_e3_are_the_protocol():
    e2 = e2_runs(GridOptions())
    assert len(_arms(e2)) == 2 * 2 * 13 and len(e2) == 2 * 2 * 13 * 5
    assert {r.cfg.train.epochs for r in e2} == {40}
    assert {(r.cfg.kd.temperature, r.cfg.kd.alpha) for r in e2 if r.cfg.kd.teacher != "none"} \
        == {(t, a) for t in (1.0, 2.0, 4.0, 8.0) for a in (0.1, 0.5, 0.9)}
    e3 = e3_runs(GridOptions())
    assert len(e3) == 2 * 6 * 5
    for r in e3:
        assert (r.cfg.train.batch_size, r.cfg.train.epochs, r.cfg.data.train_per_class) == \
            (1, 10, 150)
        assert (r.cfg.kd.temperature, r.cfg.kd.alpha) == (3.0, 0.9)
    assert {r.cfg.kd.variant for r in e3 if r.cfg.kd.teacher != "none"} == \
        {"hinton", "lskd", "learned-scale", "dkd", "pseudo"}
    assert all(r.cfg.kd.options == {"beta": 8.0} for r in e3 if r.cfg.kd.variant == "dkd")


def test_a_short_schedule_is_the_first_epochs_of_a_long_run(tmp_path):
    """E2 reads its 10-epoch arm from the 40-epoch runs: Adam at a constant rate and a
    data order seeded per epoch make the first epochs of a longer run the shorter run."""
    cfg = DistillConfig()
    cfg.student.name, cfg.student.qubits = "paper-v2", 4
    cfg.data.dataset, cfg.data.classes = "digits", "0-3"
    cfg.data.train_per_class, cfg.data.test_per_class, cfg.data.val_per_class = 40, 20, 10
    cfg.kd.teacher, cfg.train.batch_size = "mlp", 16
    with cpu_threads(1):
        cfg.train.epochs = 2
        _, short, _ = run_distill(cfg, tmp_path / "short")
        cfg.train.epochs = 4
        _, long, _ = run_distill(cfg, tmp_path / "long")
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in short.history]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"}
                     for h in long.history[:2]]


def test_quick_study_reports_the_primary_comparison_of_its_runs(tmp_path, capsys):
    out = tmp_path / "kd"
    assert main(["reproduce", "kd-study", "--quick", "--experiments", "E1", "--lockstep",
                 "on", "--workers", "1", "--out", str(out)]) == 0
    rows = {p.parent.name: json.loads(p.read_text()) for p in out.glob("runs/*/row.json")}
    assert len(rows) == 8
    diffs = [rows[f"E1_digits_KD+T_T4_a0.9_s{s}"]["test_acc"]
             - rows[f"E1_digits_PL+T_a0.9_s{s}"]["test_acc"] for s in (0, 1)]
    m, lo, hi = t_interval(diffs)
    table = (out / "table.md").read_text()
    assert (f"KD+T_T4_a0.9 − PL+T_a0.9 = {100 * m:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}] "
            "(n=2)") in table
    for arm in ("CE", "KD_T4_a0.9", "KD+T_T4_a0.9", "PL+T_a0.9"):
        assert f"| {arm} | 2 |" in table


@pytest.mark.parametrize("flag", [["--epochs", "3"], ["--teachers", "lenet"],
                                  ["--experiments", "E9"]])
def test_options_the_protocol_fixes_are_refused(tmp_path, capsys, flag):
    assert main(["reproduce", "kd-study", "--quick", *flag, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and ("fixed by the protocol" in err or "E9" in err)


def test_e4_is_e1s_setting_with_the_registered_arms():
    e1 = {r.run_id.replace("E1_", "", 1): r.cfg for r in e1_runs(GridOptions())}
    e4 = e4_runs(GridOptions())
    assert len(e4) == 2 * 3 * 5
    assert {r.run_id.rsplit("_s", 1)[0].split("_", 2)[2] for r in e4} == {
        "PL+T_a0.9", "LS+T_T4_a0.9", "LSKD+T_T4_a0.9"}
    for r in e4:
        assert (r.cfg.kd.temperature, r.cfg.kd.alpha) == (4.0, 0.9)
        # PL+T is E1's run again; the others differ from it in the loss only
        same = e1[f"{r.cfg.data.dataset}_PL+T_a0.9_s{r.cfg.train.seed}"]
        assert r.cfg.data == same.data and r.cfg.train == same.train
        assert r.cfg.kd.variant in {"pseudo", "learned-scale", "lskd"}


def test_e2_stage_2_is_the_selected_recipe_and_its_baseline_on_fresh_seeds():
    from qdistill.experiments.kd_study import E2_SELECTED, e2s2_runs

    runs = e2s2_runs(GridOptions())
    assert len(runs) == 2 * 2 * 5
    assert {r.cfg.train.seed for r in runs} == set(range(5, 10))  # stage 1: 0-4
    for r in runs:
        t, a, epochs = E2_SELECTED[r.cfg.data.dataset]
        assert r.cfg.train.epochs == epochs and r.cfg.train.batch_size == 128
        if r.cfg.kd.teacher != "none":
            assert (r.cfg.kd.temperature, r.cfg.kd.alpha) == (t, a)


def _fake(run_id: str, test_acc: float, classes=None, tests=None, vals=None) -> dict:
    """A row of a finished run as write_report reads it (no training)."""
    tests = tests or [test_acc] * 3
    vals = vals or list(tests)
    return {"run_id": run_id, "seed": int(run_id.rsplit("_s", 1)[1]), "test_acc": test_acc,
            "val_acc": max(vals), "best_epoch": 2, "classes": classes,
            "test_acc_per_epoch": tests, "val_acc_per_epoch": vals}


def test_figures_are_written_and_plot_the_tables_numbers(tmp_path):
    """gains.png and e2_gains.png come with table.md, and what they draw is what the
    table prints: here from hand-made rows with known accuracies."""
    from qdistill.experiments import kd_figures
    from qdistill.experiments.kd_figures import write_report
    from qdistill.experiments.kd_study import _by, _paired

    kd, pl = (0.80, 0.82, 0.84), (0.70, 0.71, 0.75)  # differences 0.10, 0.11, 0.09
    rows = [_fake(f"E1_mnist_KD+T_T4_a0.9_s{s}", kd[s]) for s in range(3)]
    rows += [_fake(f"E1_mnist_PL+T_a0.9_s{s}", pl[s]) for s in range(3)]
    # E3: one of two hinton runs at chance (0.10 < 1.5/8)
    rows += [_fake(f"E3_mnist_0-7_v1_none_s{s}", 0.90) for s in range(2)]
    rows += [_fake("E3_mnist_0-7_v1_hinton_s0", 0.10, "0-7"),
             _fake("E3_mnist_0-7_v1_hinton_s1", 0.88, "0-7")]
    # E2: 4 epochs, so the short schedule is the first 2 (as --quick); validation
    # selects epoch 2 of the first two, epoch 4 of all
    for s in range(2):
        rows.append(_fake(f"E2_digits_v2_none_s{s}", 0.5, tests=[0.5, 0.6, 0.7, 0.8],
                          vals=[0.1, 0.2, 0.3, 0.4]))
        rows.append(_fake(f"E2_digits_v2_T2_a0.5_s{s}", 0.5,
                          tests=[0.5, 0.6 + 0.01 * s, 0.7, 0.9], vals=[0.1, 0.2, 0.3, 0.4]))
    table = write_report(rows, tmp_path, GridOptions(), 0.0)
    for name in ("gains.png", "e2_gains.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000

    gains = {(g.exp, g.cell, g.treat): g for g in kd_figures.study_gains(rows)}
    primary = gains[("E1", "E1_mnist", "KD+T_T4_a0.9")]
    assert primary.control == "PL+T_a0.9" and primary.primary and primary.n == 3
    m, lo, hi = t_interval([0.10, 0.11, 0.09])
    assert primary.mean == pytest.approx(10.0)
    assert (primary.mean, primary.lo, primary.hi) == pytest.approx((100 * m, 100 * lo, 100 * hi))
    paired = _paired(_by(rows, "E1_mnist", "KD+T_T4_a0.9"), _by(rows, "E1_mnist", "PL+T_a0.9"))
    assert (primary.mean, primary.lo, primary.hi) == tuple(100 * v for v in paired[:3])
    assert f"{primary.mean:+.2f} [{primary.lo:+.2f}, {primary.hi:+.2f}] (n=3)" in table
    hinton = gains[("E3", "E3_mnist_0-7_v1", "hinton")]
    assert hinton.note == "1/2 collapsed" and hinton.mean == pytest.approx(-41.0)
    assert "| hinton | 2 |" in table and "| 1/2 |" in table

    short, full = kd_figures.e2_panels(rows)
    assert (short.epochs, full.epochs, short.ts, short.alphas) == (2, 4, (2.0,), (0.5,))
    assert short.grid[0, 0] == pytest.approx(0.5)  # 0.605 - 0.6 (mean of +0, +0.01)
    assert full.grid[0, 0] == pytest.approx(10.0)  # 0.9 - 0.8
    assert short.text[0][0].startswith("+0.50\n[") and "| T2_a0.5 | 2 | 2 |" in table
    assert short.text[0][0].replace("\n", " ") in table  # the test gain column
