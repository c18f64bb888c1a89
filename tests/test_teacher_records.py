"""A teacher known only by its committed record (teachers/records.py): a fresh machine
distils from the recorded logits exactly as from the weights, says so, and refuses
images the record does not hold."""

import json

import pytest
import torch

from qdistill.config import DistillConfig
from qdistill.distillation.run import run_distill, teacher_config_for
from qdistill.errors import QdistillError
from qdistill.teachers.cache import teacher_dir, train_teacher
from qdistill.teachers.records import find_record, write_record
from qdistill.training.evaluation import predict_logits
from qdistill.training.fit import cpu_threads
from qdistill.training.tasks import build_task

STUDENT = {"train_per_class": 40, "test_per_class": 20, "val_per_class": 10}


def _cfg() -> DistillConfig:
    cfg = DistillConfig()
    cfg.student.name, cfg.student.qubits = "paper-v2", 4
    cfg.data.dataset, cfg.data.classes = "digits", "0-3"
    cfg.data.train_per_class = STUDENT["train_per_class"]
    cfg.data.test_per_class = STUDENT["test_per_class"]
    cfg.data.val_per_class = STUDENT["val_per_class"]
    cfg.kd.teacher, cfg.kd.teacher_epochs = "mlp", 2
    cfg.train.epochs, cfg.train.batch_size, cfg.train.device = 2, 16, "cpu"
    return cfg


def _recorded(tmp_path, monkeypatch):
    """A trained teacher (its run directory and model) and its record, the only one
    in $QDISTILL_TEACHER_RECORDS."""
    cfg = _cfg()
    run = tmp_path / "teacher"
    monkeypatch.setenv("QDISTILL_CACHE_DIR", str(tmp_path / "cache-a"))
    with cpu_threads(1):
        model, _ = train_teacher(teacher_config_for(cfg), run)
    records = tmp_path / "records"
    rec = write_record(run, records / "mlp-digits-0-3", STUDENT)
    monkeypatch.setenv("QDISTILL_TEACHER_RECORDS", str(records))
    return cfg, run, model, rec


def test_a_recorded_teacher_teaches_exactly_as_its_weights(tmp_path, monkeypatch):
    cfg, run, model, rec = _recorded(tmp_path, monkeypatch)
    tcfg = teacher_config_for(cfg)

    # The record's logits are the teacher's, on the images it holds.
    recorded, meta = find_record(tcfg)
    images = build_task(cfg.data, 0).train.images
    assert torch.equal(predict_logits(recorded, images), predict_logits(model.eval(), images))
    assert meta["weights_sha256"] == json.loads((run / "best.json").read_text())[
        "weights_sha256"]

    # A fresh cache: the student learns from the record, no teacher is trained.
    monkeypatch.setenv("QDISTILL_CACHE_DIR", str(tmp_path / "cache-b"))
    with cpu_threads(1):
        _, from_record, rmeta = run_distill(cfg, tmp_path / "student-record")
    assert rmeta["teacher"]["recorded"] == str(rec)
    assert not teacher_dir(tcfg).exists()
    # The same student taught by the weights themselves (another fresh cache).
    monkeypatch.setenv("QDISTILL_CACHE_DIR", str(tmp_path / "cache-c"))
    cfg.kd.teacher = str(run)
    with cpu_threads(1):
        _, from_weights, wmeta = run_distill(cfg, tmp_path / "student-weights")
    assert wmeta["teacher"]["recorded"] is None
    def strip(history):
        return [{k: v for k, v in h.items() if k != "seconds"} for h in history]
    assert strip(from_record.history) == strip(from_weights.history)  # same soft targets

    # Other images (another class subset of the same data) are refused, not guessed.
    other = build_task(cfg.data.__class__(dataset="digits", classes="4-7",
                                          train_per_class=5), 0).train.images
    with pytest.raises(QdistillError, match="not among them"):
        predict_logits(recorded, other)


def test_a_record_of_other_images_or_options_is_not_used(tmp_path, monkeypatch):
    cfg, _, _, rec = _recorded(tmp_path, monkeypatch)
    tcfg = teacher_config_for(cfg)
    tcfg.train.epochs = 3  # another teacher config
    assert find_record(tcfg) is None
    tcfg.train.epochs = 2
    weights = json.loads((rec / "weights.json").read_text())
    (rec / "weights.json").write_text(json.dumps(dict(weights, data_fingerprint="f" * 64)))
    assert find_record(tcfg) is None  # trained on other data
    weights["student_images"]["sha256"] = "0" * 64  # the images found now differ
    (rec / "weights.json").write_text(json.dumps(weights))
    with pytest.raises(QdistillError, match="not the recorded ones"):
        find_record(tcfg)


def test_a_committed_record_is_named_relative_to_the_checkout(tmp_path, monkeypatch):
    """Runs keep the record's path; a committed one reads the same in every clone."""
    from qdistill.teachers.records import CHECKOUT, _shown, record_dirs

    monkeypatch.delenv("QDISTILL_TEACHER_RECORDS", raising=False)

    assert record_dirs()[0] == CHECKOUT / "results" / "teachers"
    assert _shown(CHECKOUT / "results" / "teachers" / "alexnet-mnist-0-5") == \
        "results/teachers/alexnet-mnist-0-5"
    assert _shown(tmp_path / "rec") == str((tmp_path / "rec").resolve())
