"""scripts/grid_summary.py: the aggregate numbers docs/reproduction.md quotes, on a
hand-made grid whose means, ranges and chance counts are worked out below."""

import importlib.util
import json
from pathlib import Path

import pytest


def _script():
    spec = importlib.util.spec_from_file_location(
        "grid_summary", Path(__file__).parents[1] / "scripts" / "grid_summary.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def _row(d: Path, setting: str, teacher: str, seed: int, acc: float, epochs: int = 10,
         classical: int = 21483) -> None:
    run_id = f"{setting}_{teacher}-te{epochs}_s{seed}" if teacher != "none" \
        else f"{setting}_none_s{seed}"
    (d / "runs" / run_id).mkdir(parents=True)
    (d / "runs" / run_id / "row.json").write_text(json.dumps({
        "run_id": run_id, "setting": setting, "dataset": "mnist", "classes": "0-7",
        "seed": seed, "teacher": teacher, "teacher_epochs": epochs if teacher != "none"
        else None, "test_acc": acc, "params_classical": classical}))


def test_gains_paired_by_seed_and_collapses_counted(tmp_path, capsys):
    # K = 8: chance below 1.5 / 8 = 0.1875
    for s, (base, kd) in enumerate([(0.90, 0.92), (0.80, 0.10), (0.70, 0.65)]):
        _row(tmp_path, "q3", "none", s, base)
        _row(tmp_path, "q3", "alexnet", s, kd)
    _row(tmp_path, "q3", "alexnet", 0, 0.95, epochs=1)  # another length: its own label
    _row(tmp_path, "fq", "none", 0, 0.10, classical=0)  # fully quantum: left out
    assert _script().main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    # gains +2, -70, -5 points; without the collapsed pair +2 and -5
    assert ("alexnet-te10   runs   3, mean acc  55.67, at chance  1 | gain mean -24.33, "
            "range -70.00 to +2.00, positive 1 of 3; without a collapse: 2 pairs, mean "
            "-1.50 (range -5.00 to +2.00)") in out
    assert "alexnet-te1    runs   1, mean acc  95.00, at chance  0 | gain mean  +5.00" in out
    assert "none           runs   3, mean acc  80.00, at chance  0\n" in out
    assert "all runs       runs   7," in out


def test_only_and_an_empty_directory(tmp_path, capsys):
    _row(tmp_path, "q3", "none", 0, 0.9)
    _row(tmp_path, "q3", "lenet", 0, 0.8)
    assert _script().main([str(tmp_path), "--only", "*_none_*"]) == 0
    assert "lenet" not in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no hybrid paper-v1 runs"):
        _script().main([str(tmp_path / "missing")])
