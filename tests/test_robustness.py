"""Robustness evaluation of real trained students (digits, a 4-qubit fully quantum
student): exact vs shots vs noise, the `qdistill evaluate` CLI, noise-aware training."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from qdistill.cli.parser import main
from qdistill.config import DistillConfig, load_config
from qdistill.distillation.run import load_student, run_distill
from qdistill.experiments.robustness import _test_split, mean_accuracy, robustness_rows
from qdistill.quantum import noisy
from qdistill.training.evaluation import predict_logits

TINY = ["student.name=quantum", "student.qubits=4", "student.reduction=avgpool",
        "student.layers=3", "kd.teacher=none", "data.dataset=digits", "data.classes=0-3",
        "data.train_per_class=30", "data.test_per_class=20", "data.val_per_class=10",
        "train.batch_size=8", "train.lr=0.05", "train.device=cpu"]


@pytest.fixture(scope="module")
def student_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("robust") / "run"
    cfg = load_config(DistillConfig, None, [*TINY, "train.epochs=5"])
    _, result, _ = run_distill(cfg, out)
    return out, result


def test_noise_zero_is_exact_and_full_depolarizing_is_chance(student_run):
    run, result = student_run
    # depolarizing=0.75 (and 15/16 on two qubits) leaves the completely mixed state
    # after every gate: all four class probabilities tie, argmax takes class 0, and
    # the balanced test split gives exactly 1/4.
    full = "depolarizing=0.75,depolarizing2=0.9375"
    rows = robustness_rows([run], [200], ["depolarizing=0", "depolarizing=0.02", full],
                           seeds=2)
    exact = mean_accuracy(rows, "exact")
    assert exact == pytest.approx(result.test_acc)  # the run's own number
    assert exact > 0.6  # well above chance, so the comparisons below mean something
    # The claims are checked on the logits, to float32 rounding; accuracies are compared
    # only where rounding cannot decide an argmax. depolarizing=0 runs the density-matrix
    # simulator, another float path than the statevector (its sums in another order, by
    # other kernels on another CPU), so it gives the exact accuracy up to test images
    # whose top two exact logits are a near tie.
    model, meta = load_student(run)
    images, labels = _test_split(meta)
    ideal = predict_logits(model, images)
    with noisy(model, "depolarizing=0"):
        zero = predict_logits(model, images)
    with noisy(model, full):
        mixed = predict_logits(model, images)
    torch.testing.assert_close(zero, ideal, atol=1e-5, rtol=1e-5)
    top2 = ideal.topk(2, dim=1).values
    near_ties = int((top2[:, 0] - top2[:, 1] <= 1e-4).sum())
    assert abs(mean_accuracy(rows, "depolarizing=0") - exact) * len(labels) <= near_ties
    # Full depolarizing: every basis state of the 4 qubits has probability 1/16, so every
    # class logit is log(1/16 + 0.01). Which of four logits equal to float32 rounding wins
    # (exact ties: class 0, and the balanced split gives exactly 1/4) depends on the
    # CPU's kernels: the accuracy is only checked to be far below the exact one.
    torch.testing.assert_close(mixed, torch.full_like(mixed, math.log(1 / 16 + 0.01)),
                               atol=1e-5, rtol=0)
    assert mean_accuracy(rows, full) < exact - 0.15
    assert mean_accuracy(rows, f"{full} + shots=200") < exact - 0.15
    assert abs(mean_accuracy(rows, "depolarizing=0.02") - exact) < 0.15
    # 1 exact + 2 shot seeds + 3 noise (density: deterministic) + 3 x 2 noise + shots.
    assert len(rows) == 1 + 2 + 3 + 6
    seeds = [r["seed"] for r in rows if r["setting_label"] == "shots=200"]
    assert seeds == [0, 1]


def test_evaluate_cli_writes_files(student_run, tmp_path, capsys):
    run, _ = student_run
    out = tmp_path / "eval"
    assert main(["evaluate", "--run", str(run), "--shots", "50,500", "--noise",
                 "depolarizing=0.01", "--noise", "preset:ibm-heron", "--seeds", "2",
                 "--method", "trajectories", "--trajectories", "16", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| setting | run |" in text and "preset:ibm-heron + shots=500" in text
    with open(out / "robustness.csv") as f:
        rows = list(csv.DictReader(f))
    # exact once; shots, trajectories and noise + shots with 2 seeds each.
    assert len(rows) == 1 + 2 * 2 + 2 * 2 + 4 * 2
    assert {r["method"] for r in rows} == {"", "trajectories"}
    md = (out / "robustness.md").read_text()
    assert "± " in md and "(n=2)" in md
    assert (out / "robustness.png").stat().st_size > 10_000


def test_grid_robustness_pools_runs_per_teacher(student_run, tmp_path, caplog):
    import shutil

    from qdistill.experiments.robustness import grid_robustness

    run, _ = student_run
    for seed in (0, 1):  # a reproduce directory: OUT/runs/<id>/ with row.json
        dst = tmp_path / "runs" / f"digits_none_s{seed}"
        shutil.copytree(run, dst)
        (dst / "row.json").write_text(json.dumps({"setting": "digits 0-3, 4 qubits"}))
    paths = grid_robustness(tmp_path, [50], ["depolarizing=0.01"], seeds=2)
    md = paths["md"].read_text()
    assert "## digits 0-3, 4 qubits" in md and "| setting | none |" in md
    assert "over runs" in md and "(n=2)" in md  # two runs pooled, each averaged first
    assert paths["png"].stat().st_size > 10_000
    with open(paths["csv"], newline="") as f:
        first = list(csv.DictReader(f))
    exact = next(float(r["test_acc"]) for r in first if r["setting_label"] == "exact")
    for seed in (0, 1):  # the grid's own test accuracy: the exact evaluation's
        (tmp_path / "runs" / f"digits_none_s{seed}" / "row.json").write_text(json.dumps({
            "setting": "digits 0-3, 4 qubits", "teacher": "none", "test_acc": exact}))
    caplog.set_level("INFO", logger="qdistill.experiments.robustness")
    grid_robustness(tmp_path, [50], ["depolarizing=0.01"], seeds=2)  # nothing new
    assert "0 runs evaluated, 2 taken from robustness.csv" in caplog.text
    with open(paths["csv"], newline="") as f:
        assert list(csv.DictReader(f)) == first
    (tmp_path / "runs" / "digits_none_s1" / "row.json").write_text(json.dumps({
        "setting": "digits 0-3, 4 qubits", "teacher": "none", "test_acc": exact - 0.1}))
    grid_robustness(tmp_path, [50], ["depolarizing=0.01"], seeds=2)  # s1 trained again
    assert "1 runs evaluated, 1 taken from robustness.csv" in caplog.text
    # one teacher at two training lengths: two columns, never one (the runs' own files,
    # here a student trained without a teacher, are labelled by their row.json)
    for epochs in (1, 10):
        dst = tmp_path / "runs" / f"digits_lenet-te{epochs}_s0"
        shutil.copytree(run, dst)
        (dst / "row.json").write_text(json.dumps({
            "setting": "digits 0-3, 4 qubits", "teacher": "lenet", "teacher_epochs": epochs}))
    for seed in (0, 1):
        (tmp_path / "runs" / f"digits_none_s{seed}" / "row.json").write_text(json.dumps({
            "setting": "digits 0-3, 4 qubits", "teacher": "none"}))
    md = grid_robustness(tmp_path, [50], [], seeds=1)["md"].read_text()
    assert "| setting | lenet-te1 - none | lenet-te10 - none |" in md
    assert "| setting | lenet-te10 | lenet-te1 | none |" in md  # the runs' directory order


def test_evaluate_bad_noise_is_one_line_error(student_run, capsys):
    run, _ = student_run
    assert main(["evaluate", "--run", str(run), "--noise", "depolarising=0.1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "valid keys: depolarizing, depolarizing2, damping" in err
    assert main(["evaluate", "--run", str(run), "--noise", "readout=2"]) == 2
    assert "must be in [0, 1]" in capsys.readouterr().err
    assert main(["evaluate", "--run", str(run), "--shots", "ten"]) == 2
    assert "give integers" in capsys.readouterr().err


def test_noise_aware_training_and_checkpoint_round_trip(tmp_path, capsys):
    out = tmp_path / "noisy"
    args = ["distill", "--out", str(out), "--epochs", "2"] + [
        a for kv in TINY for a in ("--set", kv)] + [
        "--set", "student.noise=depolarizing=0.02,depolarizing2=0.05,damping=0.01,readout=0.02"]
    assert main(args) == 0
    history = json.loads((out / "result.json").read_text())["history"]
    assert history[1]["train_loss"] < history[0]["train_loss"]
    model, meta = load_student(out)
    assert meta["student"]["noise"].startswith("depolarizing=0.02")
    assert model.quantum.noise is not None and model.quantum.noise.method == "density"
    x = torch.rand(5, 1, 8, 8)
    again, _ = load_student(out)
    assert torch.equal(model(x), again(x))  # density noise is deterministic
    noisy_out = model(x)
    model.quantum.noise = None
    assert not torch.allclose(model(x), noisy_out)  # the noise was really in the loop
    assert main(["evaluate", "--help"]) == 0
    capsys.readouterr()
    bad = [a for a in args if a != str(out)] + ["--set", "student.noise=dep=1"]
    bad[bad.index("--out") + 1:bad.index("--out") + 1] = [str(tmp_path / "bad")]
    assert main(bad) == 2
    assert "student.noise: noise 'dep=1': unknown item" in capsys.readouterr().err


def test_kd_robustness_table_pairs_by_row_and_seed():
    from qdistill.experiments.robustness import kd_robustness_table

    def row(group, seed, teacher, label, acc):
        return {"group": group, "train_seed": seed, "teacher": teacher, "classes": "0-3",
                "setting_label": label, "test_acc": acc, "student": "paper-v1"}

    rows = []
    # Baselines lose 0.10 at 100 shots, distilled students 0.04 and 0.06: -0.06, -0.04.
    for g, (kd_loss, base_loss) in {"a": (0.04, 0.10), "b": (0.06, 0.10)}.items():
        rows += [row(g, 0, "none", "exact", 0.9), row(g, 0, "none", "shots=100", 0.9 - base_loss),
                 row(g, 0, "lenet", "exact", 0.8), row(g, 0, "lenet", "shots=100", 0.8 - kd_loss)]
    # A collapsed distilled run (exact at chance) is left out of the pairs.
    rows += [row("c", 0, "none", "exact", 0.9), row("c", 0, "none", "shots=100", 0.5),
             row("c", 0, "lenet", "exact", 0.25), row("c", 0, "lenet", "shots=100", 0.25)]
    table = kd_robustness_table(rows)
    line = next(ln for ln in table.splitlines() if ln.startswith("| shots=100"))
    assert "-5.00 [" in line and "(n=2)" in line  # mean of -6 and -4 points
