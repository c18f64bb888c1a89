"""``qdistill sweep``: axes, the plan (every combination + one no-teacher baseline per
seed), the report's paired gains checked against the runs' own result files, resume,
and one-line errors for bad axes."""

import csv
import json
import math

import pytest

from qdistill.cli.parser import main
from qdistill.config import DistillConfig, to_dict
from qdistill.errors import ConfigError
from qdistill.experiments.sweep import baseline_of, parse_axis, plan
from qdistill.reporting.tables import t_interval


def test_axes_parse_values_ranges_aliases():
    a = parse_axis("temperature=1,2.5,8")
    assert (a.key, a.values, a.label) == ("kd.temperature", [1, 2.5, 8], "temperature")
    assert parse_axis("seed=0-2,7").values == [0, 1, 2, 7]
    assert parse_axis("loss.alpha=0.1,0.9").key == "kd.alpha"
    assert parse_axis("kd.options.beta=2,8").values == [2, 8]
    # a string key is not a range; ';' separates values that hold commas
    assert parse_axis("data.classes=0-5;0,3,7").values == ["0-5", "0,3,7"]
    assert parse_axis("data.transfer=null,unlabelled:20").values == [None, "unlabelled:20"]


@pytest.mark.parametrize("spec, words", [
    ("kd.temprature=1,2", "'kd.temprature' is not a config key"),
    ("kd=1", "not a config key"),
    ("train.seed.x=1", "not a config key"),
    ("seed", "give KEY=V1,V2"),
    ("seed=", "give KEY=V1,V2"),
    ("seed=3-1", "empty range"),
    ("alpha=0.5,0.5", "given twice"),
])
def test_bad_axes_are_named(spec, words):
    with pytest.raises(ConfigError, match=words):
        parse_axis(spec)


def _base(**kd):
    cfg = DistillConfig()
    cfg.student.name, cfg.student.qubits = "paper-v2", 4
    cfg.data.dataset, cfg.data.classes = "digits", "0-3"
    cfg.data.train_per_class, cfg.data.test_per_class, cfg.data.val_per_class = 60, 30, 20
    cfg.kd.teacher = "mlp"
    for k, v in kd.items():
        setattr(cfg.kd, k, v)
    cfg.train.epochs, cfg.train.batch_size = 2, 16
    return to_dict(cfg)


def test_plan_pairs_every_run_with_one_baseline_per_seed():
    p = plan(_base(), [parse_axis("alpha=0.5,0.9"), parse_axis("seed=0-2"),
                       parse_axis("transfer=null,unlabelled:10")])
    grid = [r for r in p.runs if r.setting == "sweep"]
    base = [r for r in p.runs if r.setting == "baseline"]
    assert len(grid) == 12 and len(base) == 3  # KD axes and the transfer set share one
    assert len({r.run_id for r in p.runs}) == len(p.runs)
    for run in grid:
        b = next(r for r in base if r.run_id == p.baseline[run.run_id])
        assert b.cfg == baseline_of(run.cfg)
        assert b.cfg.kd.teacher == "none" and b.cfg.data.transfer is None
        assert b.cfg.train.seed == run.cfg.train.seed and b.cfg.student == run.cfg.student
    # a grid cell without a teacher is the baseline itself, not a second run
    p2 = plan(_base(), [parse_axis("teacher=none,mlp"), parse_axis("seed=0-1")])
    assert len(p2.runs) == 4
    assert all(p2.baseline[rid] in p2.cells for rid in p2.baseline)
    with pytest.raises(ConfigError, match="out of range|must be"):
        plan(_base(), [parse_axis("alpha=0.5,1.5")])  # checked before anything runs


def test_sweep_end_to_end_gains_match_the_runs_and_resume(tmp_path, capsys):
    out = tmp_path / "sw"
    argv = ["sweep", "--grid", "temperature=1,4", "seed=0-1", "--student", "paper-v2",
            "--qubits", "4", "--dataset", "digits", "--classes", "0-3", "--teacher", "mlp",
            "--epochs", "2", "--batch-size", "16", "--labels-per-class", "60",
            "--test-per-class", "30", "--val-per-class", "20", "--workers", "1",
            "--out", str(out)]
    assert main(argv) == 0
    rows = list(csv.DictReader(open(out / "runs.csv")))
    assert len(rows) == 4 and (out / "gains.png").stat().st_size > 0
    results = {d.name: json.loads((d / "result.json").read_text())
               for d in (out / "runs").iterdir()}
    assert len(results) == 6  # 4 grid runs + 2 baselines
    by_seed: dict[str, list[float]] = {}
    for row in rows:
        base = next(results[n] for n in results if n.startswith(f"baseline_seed={row['seed']}-"))
        gain = results[row["run_id"]]["test_acc"] - base["test_acc"]
        assert math.isclose(float(row["gain"]), gain, abs_tol=1e-12)
        by_seed.setdefault(row["temperature"], []).append(gain)
    table = (out / "table.md").read_text()
    for t, gains in by_seed.items():
        mean, lo, hi = t_interval(gains)
        assert f"| {t} | 2 |" in table and f"[{100 * lo:+.2f}, {100 * hi:+.2f}]" in table
    capsys.readouterr()
    assert main(argv) == 0  # everything is done: nothing is trained again
    assert "6 runs, 6 done, 0 to run" in capsys.readouterr().out


def test_a_bad_axis_is_one_line_before_any_data_loads(tmp_path, capsys):
    assert main(["sweep", "--grid", "kd.temprature=1", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "kd.temprature" in err and "not a config key" in err
    assert not (tmp_path / "x").exists()
