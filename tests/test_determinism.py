"""Same seed, same command, CPU -> bit-identical results (issue #5).

Each test runs one real ``qdistill`` command twice, into two run directories, and
compares what the runs wrote: ``best.safetensors`` (the selected weights) and
``best.json`` byte for byte, and ``metrics.jsonl``, ``result.json`` and ``last.json``
with one field removed: ``seconds``, the wall-clock time of each epoch, which is the
only time field those files hold (in every metrics.jsonl line, and in the ``history``
of result.json and last.json). Everything else, every loss and accuracy float
included, must be identical. The tiny 'digits' dataset keeps each test to seconds.
Both runs share one process here; that a fresh process gives the same bytes is what
test_resume_kill.py (kill + resume vs an uninterrupted run) and scripts/soak.py check.
"""

import json
from pathlib import Path

import pytest

from qdistill.cli.parser import main

SMALL = ["--train-per-class", "20", "--test-per-class", "10", "--val-per-class", "5"]
TEACHER = ["teacher", "train", "--arch", "mlp", "--dataset", "digits", "--classes", "0-4",
           "--epochs", "2", "--batch-size", "32", "--seed", "3", "--device", "cpu"]
# A paper-v2 student (4 qubits, FC + amplitude encoding) at batch 1, as in the paper.
STUDENT = ["distill", "--student", "paper-v2", "--qubits", "4", "--dataset", "digits",
           "--classes", "0-4", *SMALL, "--epochs", "2", "--lr", "0.01", "--seed", "1",
           "--device", "cpu"]


def without_seconds(obj):
    if isinstance(obj, dict):
        return {k: without_seconds(v) for k, v in obj.items() if k != "seconds"}
    if isinstance(obj, list):
        return [without_seconds(v) for v in obj]
    return obj


def run_files(run: Path) -> dict[str, object]:
    """What a run wrote, with the wall-clock 'seconds' fields taken out."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return {
        "metrics.jsonl": [json.dumps(without_seconds(json.loads(line))) for line in lines],
        "result.json": without_seconds(json.loads((run / "result.json").read_text())),
        "last.json": without_seconds(json.loads((run / "last.json").read_text())),
        "best.json": (run / "best.json").read_bytes(),
        "best.safetensors": (run / "best.safetensors").read_bytes(),
    }


def assert_identical(a: Path, b: Path) -> dict:
    fa, fb = run_files(a), run_files(b)
    for name in fa:
        assert fa[name] == fb[name], f"{name} differs between {a} and {b}"
    # The time field really is there (and is the only thing dropped).
    first = json.loads((a / "metrics.jsonl").read_text().splitlines()[0])
    assert set(first) - set(json.loads(fa["metrics.jsonl"][0])) == {"seconds"}
    return json.loads((a / "result.json").read_text())


def cli(argv) -> None:
    assert main([str(a) for a in argv]) == 0


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "run"
    cli([*TEACHER, "--out", out])
    return out


def test_teacher_run_is_bit_identical(teacher, tmp_path):
    cli([*TEACHER, "--out", tmp_path / "b"])
    result = assert_identical(teacher, tmp_path / "b")
    assert result["epochs_run"] == 2 and result["test_acc"] > 0.8


def test_distilled_student_is_bit_identical(teacher, tmp_path):
    for name in ("a", "b"):
        cli([*STUDENT, "--teacher", teacher, "--out", tmp_path / name])
    result = assert_identical(tmp_path / "a", tmp_path / "b")
    meta = json.loads((tmp_path / "a" / "best.json").read_text())
    assert meta["teacher"]["arch"] == "mlp" and meta["config"]["kd"]["alpha"] == 0.9
    assert result["test_acc"] > 0.7  # it learns: chance is 0.2


def test_shot_mode_student_is_bit_identical(teacher, tmp_path):
    shots = [*STUDENT, "--teacher", teacher, "--set", "student.shots=200"]
    for name in ("a", "b"):
        cli([*shots, "--out", tmp_path / name])
    result = assert_identical(tmp_path / "a", tmp_path / "b")
    assert json.loads((tmp_path / "a" / "best.json").read_text())["student"]["shots"] == 200
    # The shots are really sampled: the same student with exact probabilities differs.
    cli([*STUDENT, "--teacher", teacher, "--out", tmp_path / "exact"])
    exact = json.loads((tmp_path / "exact" / "result.json").read_text())
    assert [h["train_loss"] for h in exact["history"]] != \
        [h["train_loss"] for h in result["history"]]
