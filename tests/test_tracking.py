"""Epoch callbacks and TensorBoard scalars, through fit, run_distill and the CLI."""

import json

import pytest
from test_bad_input import STUDENT, TEACHER, refused

from qdistill.cli.parser import main

pytestmark = pytest.mark.usefixtures("isolated_data")  # see conftest.py


def test_callbacks_see_every_epoch_as_metrics_jsonl_records_it(tmp_path):
    from qdistill.config import DistillConfig, load_config
    from qdistill.distillation.run import run_distill

    cfg = load_config(DistillConfig, None, [
        "student.name=paper-v2", "student.qubits=4", "data.dataset=digits",
        "data.classes=0-4", "data.train_per_class=20", "data.test_per_class=10",
        "data.val_per_class=5", "train.epochs=3", "train.device=cpu", "kd.teacher=none"])
    seen: list[dict] = []
    out = tmp_path / "run"
    run_distill(cfg, out, callbacks=[seen.append])
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in seen] == [1, 2, 3]
    for m, r in zip(seen, records, strict=True):
        assert {k: m[k] for k in r} == r  # the same numbers the run directory keeps
        assert m["run"] == str(out) and 1 <= m["best_epoch"] <= m["epoch"]
    # Callbacks run after the epoch's checkpoint: a run stopped by one after epoch 2
    # resumes at epoch 3, and the epochs it restored are not replayed.
    class Stop(Exception):
        pass

    def stop_after_2(m):
        if m["epoch"] == 2:
            raise Stop
    out2 = tmp_path / "run2"
    with pytest.raises(Stop):
        run_distill(cfg, out2, callbacks=[stop_after_2])
    again: list[dict] = []
    run_distill(cfg, out2, callbacks=[again.append])
    assert [m["epoch"] for m in again] == [3]


def test_tensorboard_scalars_from_the_cli(tmp_path):
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator")
    tb = tmp_path / "tb"
    assert main([*TEACHER, "--epochs", "2", "--out", str(tmp_path / "t"),
                 "--tensorboard", str(tb)]) == 0
    acc = event_accumulator.EventAccumulator(str(tb))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train_loss", "train_acc", "val_acc", "test_acc", "best_epoch"} <= tags
    val = [e.value for e in acc.Scalars("val_acc")]
    records = [json.loads(line) for line in
               (tmp_path / "t" / "metrics.jsonl").read_text().splitlines()]
    assert [e.step for e in acc.Scalars("val_acc")] == [1, 2]
    assert val == pytest.approx([r["val_acc"] for r in records])


def test_a_refused_run_writes_no_tensorboard_directory(tmp_path, capsys):
    tb = tmp_path / "tb"
    refused(capsys, [*STUDENT, "--teacher", "none", "--ansatz", "hea", "--tensorboard", tb,
                     "--out", tmp_path / "o"], "does not apply to the paper-v2 student")
    assert not tb.exists()
