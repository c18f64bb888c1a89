"""Distillation runs end to end on real MNIST: baseline and KD differ in the loss only."""

import json

import pytest

from qdistill.cli.parser import main
from qdistill.config import DistillConfig, load_config
from qdistill.distillation.run import run_distill
from qdistill.errors import QdistillError

SMALL = ["data.train_per_class=20", "data.test_per_class=20", "data.val_per_class=5",
         "train.epochs=2", "train.device=cpu", "kd.teacher_epochs=1"]


def _history(result):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in result.history]


def test_kd_with_alpha_zero_is_exactly_the_baseline():
    base = load_config(DistillConfig, None, [*SMALL, "kd.teacher=none"])
    kd0 = load_config(DistillConfig, None, [*SMALL, "kd.teacher=mlp", "kd.alpha=0.0"])
    _, r_base, _ = run_distill(base, None)
    _, r_kd0, meta = run_distill(kd0, None)
    # Same images, same initial weights, same order: only the loss differs, and with
    # alpha = 0 the Hinton loss is exactly CE.
    assert _history(r_base) == _history(r_kd0)
    assert meta["teacher"]["arch"] == "mlp"
    kd = load_config(DistillConfig, None, [*SMALL, "kd.teacher=mlp"])
    _, r_kd, _ = run_distill(kd, None)
    assert _history(r_kd) != _history(r_base)


def test_teacher_of_other_classes_is_refused(tmp_path):
    assert main(["teacher", "train", "--arch", "mlp", "--dataset", "mnist", "--classes",
                 "0-2", "--epochs", "1", "--out", str(tmp_path / "t")]) == 0
    cfg = load_config(DistillConfig, None, [*SMALL, f"kd.teacher={tmp_path / 't'}"])
    with pytest.raises(QdistillError, match=r"classes=\[0, 1, 2\] but the student's task"):
        run_distill(cfg, None)


def test_distill_cli_writes_run(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["distill", "--teacher", "mlp", "--teacher-epochs", "1", "--train-per-class", "20",
            "--test-per-class", "20", "--val-per-class", "5", "--epochs", "1", "--device",
            "cpu", "--out", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "21,483 classical + 0 quantum parameters" in text
    assert (out / "best.safetensors").is_file()
    meta = json.loads((out / "best.json").read_text())
    assert meta["kind"] == "student" and meta["classes"] == [0, 1, 2, 3, 4, 5]
    assert meta["config"]["kd"]["temperature"] == 3.0
    assert main(["distill", "--help"]) == 0


def test_bad_kd_settings_are_one_line_errors(capsys):
    assert main(["distill", "--alpha", "2", "--teacher", "mlp", "--epochs", "1"]) == 2
    assert "argument --alpha: must be 0..1, got 2" in capsys.readouterr().err


def test_load_student_round_trip(tmp_path):
    import torch

    from qdistill.data import make_task
    from qdistill.distillation.run import load_student

    cfg = load_config(DistillConfig, None, [*SMALL, "kd.teacher=none", "train.epochs=1"])
    student, _, _ = run_distill(cfg, tmp_path / "s")
    loaded, meta = load_student(tmp_path / "s")
    x = make_task("mnist", "0-5", test_per_class=3).test.float_images()
    assert torch.equal(loaded(x), student.eval()(x))
    assert meta["parameters"] == {"classical": 21_483, "quantum": 0}
    assert main(["teacher", "train", "--arch", "mlp", "--dataset", "digits", "--epochs", "1",
                 "--out", str(tmp_path / "t")]) == 0
    with pytest.raises(QdistillError, match="not a student checkpoint"):
        load_student(tmp_path / "t")


def test_user_module_as_teacher():
    import torch
    from torch import nn

    torch.manual_seed(0)
    mine = nn.Sequential(nn.Flatten(), nn.Linear(784, 6))
    cfg = load_config(DistillConfig, None, [*SMALL, "train.epochs=1"])
    _, res, meta = run_distill(cfg, None, teacher=mine)
    assert meta["teacher"]["arch"] == "user:Sequential" and res.history
    with pytest.raises(QdistillError, match=r"shape \(batch, 6\)"):
        run_distill(cfg, None, teacher=nn.Sequential(nn.Flatten(), nn.Linear(784, 4)))
