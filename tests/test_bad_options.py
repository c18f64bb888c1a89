"""Bad options through the real command line, one test per class of mistake.

Each case ends as every user error does (see test_bad_input.py): exit status 2, one line
``qdistill: error: ...`` naming the option (and, for numbers, its valid range), no
traceback, and nothing written: no run directory, no teacher in the cache.
"""

import json
import os
from pathlib import Path

import pytest
from test_bad_input import STUDENT, TEACHER, no_teacher_trained, refused
from test_bad_input import trained as _trained

from qdistill.cli.parser import build_parser, main
from qdistill.config import DistillConfig, TeacherConfig, ranges

pytestmark = pytest.mark.usefixtures("isolated_data")  # see conftest.py
trained = _trained  # the tiny teacher and student runs of test_bad_input.py (a fixture)

# (command, option, value, what the message must say). Every numeric option of every
# command appears at least once below its range and, where it has one, above it.
NUMBERS = [
    (STUDENT, "--epochs", "0", r"argument --epochs: must be 1\.\.100000, got 0"),
    (STUDENT, "--epochs", "-3", r"argument --epochs: must be 1\.\.100000, got -3"),
    (STUDENT, "--batch-size", "0", r"argument --batch-size: must be 1\.\.16777216, got 0"),
    (STUDENT, "--lr", "0", r"argument --lr: must be > 0, got 0"),
    (STUDENT, "--lr", "inf", r"argument --lr: must be > 0, got inf"),
    (STUDENT, "--seed", "-5", r"argument --seed: must be 0\.\.4294967295, got -5"),
    (STUDENT, "--seed", str(2**32), r"argument --seed: must be 0\.\.4294967295"),
    (STUDENT, "--layers", "0", r"argument --layers: must be 1\.\.1000, got 0"),
    (STUDENT, "--layers", "-2", r"argument --layers: must be 1\.\.1000, got -2"),
    (STUDENT, "--qubits", "0", r"argument --qubits: must be 1\.\.40, got 0"),
    (STUDENT, "--shots", "0", r"argument --shots: must be 1\.\.1000000, got 0"),
    (STUDENT, "--shots", "1000000000000", r"argument --shots: must be 1\.\.1000000"),
    (STUDENT, "--teacher-epochs", "0", r"argument --teacher-epochs: must be 1\.\.100000"),
    (STUDENT, "--train-per-class", "0", r"argument --train-per-class: must be >= 1, got 0"),
    (STUDENT, "--test-per-class", "-1", r"argument --test-per-class: must be >= 1"),
    (STUDENT, "--val-per-class", "-1", r"argument --val-per-class: must be >= 0, got -1"),
    (STUDENT, "--val-fraction", "1", r"argument --val-fraction: must be 0\.\.0\.9, got 1"),
    (STUDENT, "--val-fraction", "nan", r"argument --val-fraction: must be 0\.\.0\.9"),
    (TEACHER, "--epochs", "0", r"argument --epochs: must be 1\.\.100000, got 0"),
    (TEACHER, "--batch-size", "-1", r"argument --batch-size: must be 1\.\.16777216"),
    # config keys without an option of their own: the key is named instead
    (STUDENT, "--set", "train.eval_batch_size=0",
     r"config key 'train\.eval_batch_size': must be 1\.\.16777216, got 0"),
    (STUDENT, "--set", "student.noise_trajectories=0",
     r"config key 'student\.noise_trajectories': must be 1\.\.100000, got 0"),
    (STUDENT, "--set", "kd.teacher_seed=-1", r"config key 'kd\.teacher_seed': must be"),
    (STUDENT, "--set", "train.weight_decay=-1", r"config key 'train\.weight_decay'"),
    # a key with an option is named by both, whichever way the value came in
    (STUDENT, "--set", "train.epochs=0", r"--epochs \(train\.epochs\): must be 1\.\.100000"),
    (TEACHER, "--set", "train.lr=-1", r"--lr \(train\.lr\): must be > 0, got -1"),
    (["reproduce", "paper-v1"], "--seeds", "0", r"argument --seeds: must be 1\.\.100, got 0"),
    (["reproduce", "paper-v1"], "--epochs", "0", r"argument --epochs: must be 1\.\.100000"),
    (["reproduce", "paper-v1"], "--workers", "0", r"argument --workers: must be 1\.\.1024"),
    (["reproduce", "paper-v1"], "--teacher-epochs", "lenet=0",
     r"--teacher-epochs 'lenet=0': epochs must be 1\.\.100000"),
    (["reproduce", "paper-v1"], "--teacher-epochs", "resnet=3",
     r"--teacher-epochs 'resnet=3': unknown teacher 'resnet'"),
]


@pytest.mark.parametrize("command,option,value,message", NUMBERS,
                         ids=[f"{c[0]}{o}={v}" for c, o, v, _ in NUMBERS])
def test_numbers_out_of_range_are_refused_before_any_work(tmp_path, capsys, command,
                                                          option, value, message):
    out = tmp_path / "out"
    refused(capsys, [*command, option, value, "--out", out], message)
    assert not out.exists()
    assert no_teacher_trained()


@pytest.mark.parametrize("option,value,message", [
    ("--shots", "1e21", r"--shots '1e21': give integers 1\.\.1000000"),
    ("--shots", "0,100", r"--shots '0,100': each must be 1\.\.1000000"),
    ("--shots", "100,2000000", r"each must be 1\.\.1000000"),
    ("--test-limit", "0", r"argument --test-limit: must be >= 1, got 0"),
    ("--test-limit", "-3", r"argument --test-limit: must be >= 1, got -3"),
    ("--seeds", "0", r"argument --seeds: must be 1\.\.1000, got 0"),
    ("--trajectories", "0", r"argument --trajectories: must be 1\.\.100000, got 0"),
])
def test_evaluate_numbers_out_of_range(trained, tmp_path, capsys, option, value, message):
    out = tmp_path / "robust"
    refused(capsys, ["evaluate", "--run", trained["student"], option, value, "--out", out],
            message)
    assert not out.exists()


def test_export_numbers_out_of_range(trained, tmp_path, capsys):
    for option, value, message in (("--test-index", "-1", "must be >= 0"),
                                    ("--shots", "0", r"must be 1\.\.1000000")):
        which = [] if option == "--test-index" else ["--test-index", "0"]
        refused(capsys, ["export", "--run", trained["student"], *which, option, value,
                         "--out", tmp_path / "x"], f"argument {option}: {message}")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("value", ["abc", "1.5", ""])
def test_a_wrong_type_is_one_line_naming_option_and_type(tmp_path, capsys, value):
    refused(capsys, [*STUDENT, "--epochs", value, "--out", tmp_path / "o"],
            rf"argument --epochs: expected an integer 1\.\.100000, got '{value}'")
    refused(capsys, [*STUDENT, "--lr", "x" + value, "--out", tmp_path / "o"],
            r"argument --lr: expected a number > 0")
    # argparse's own errors are one line too (no usage block)
    refused(capsys, [*STUDENT, "--no-such-option"], "unrecognized arguments: --no-such-option")
    refused(capsys, ["distill", "--epochs"], "argument --epochs: expected one argument")
    refused(capsys, ["reproduce", "paper-v9"], "argument grid: invalid choice: 'paper-v9'")
    assert not (tmp_path / "o").exists()


def test_every_numeric_option_documents_its_range():
    """--help shows [range] for every int/float option, and the ranges it shows for
    config-backed options are the configs' own."""
    config_ranges = {**ranges(TeacherConfig), **ranges(DistillConfig)}
    parser = build_parser()
    subs = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"][0]
    stack = list(subs.choices.values())
    seen = 0
    while stack:
        p = stack.pop()
        for action in p._actions:
            if action.__class__.__name__ == "_SubParsersAction":
                stack.extend(action.choices.values())
            elif action.type is not None and getattr(action.type, "__name__", "") in (
                    "int", "float"):
                seen += 1
                assert action.help and action.help.rstrip().endswith("]"), action.dest
                if action.dest in config_ranges:
                    assert f"[{config_ranges[action.dest].text()}]" in action.help
    assert seen >= 25


# --- options that do not apply to the chosen student --------------------------------

V1 = ["distill", "--student", "paper-v1", "--qubits", "3", "--dataset", "digits",
      "--classes", "0-4", "--train-per-class", "20", "--test-per-class", "10",
      "--val-per-class", "5", "--epochs", "1", "--device", "cpu", "--teacher", "none"]


@pytest.mark.parametrize("argv,message", [
    ([*V1, "--ansatz", "hea"],
     r"--ansatz \(student\.ansatz='hea'\) does not apply to the paper-v1 student; it "
     r"takes: --head, --angles"),
    ([*V1, "--readout", "z"], r"--readout .* does not apply to the paper-v1 student"),
    ([*V1, "--reduction", "fc"], r"--reduction .* does not apply to the paper-v1 student"),
    ([*V1, "--encoding", "angle"], r"--encoding .* does not apply to the paper-v1 student"),
    ([*V1, "--layers", "2"], r"--layers .* does not apply to the paper-v1 student"),
    ([*STUDENT, "--teacher", "none", "--head", "paper"],
     r"--head .* does not apply to the paper-v2 student; it takes: --reduction, --encoding"),
    ([*STUDENT, "--teacher", "none", "--angles", "half-pi"],
     r"--angles .* does not apply to the paper-v2 student"),
    ([*STUDENT, "--teacher", "none", "--ansatz", "strong"],
     r"--ansatz .* does not apply to the paper-v2 student"),
    ([*STUDENT, "--teacher", "none", "--set", "student.noise_method=trajectories"],
     r"student\.noise_method='trajectories' applies only with --set student\.noise"),
    ([*STUDENT, "--teacher", "none", "--set", "student.noise=depolarizing=0.01",
      "--set", "student.noise_trajectories=8"],
     r"noise_trajectories=8 applies only with --set student\.noise_method=trajectories"),
    # the fully quantum student's reduction is fixed: fc is refused, not rewritten
    ([*STUDENT, "--student", "quantum", "--teacher", "none", "--reduction", "fc"],
     "the fully quantum student takes a fixed reduction"),
])
def test_options_of_another_student_are_refused(tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    refused(capsys, [*argv, "--out", out], message)
    assert not out.exists()
    assert no_teacher_trained()


def test_the_config_records_what_runs(tmp_path, capsys):
    """The student's own defaults are filled in and recorded; options of other students
    are not recorded at all (a fully quantum student never records reduction fc)."""
    out = tmp_path / "q"
    assert main([*STUDENT, "--student", "quantum", "--layers", "1", "--teacher", "none",
                 "--out", str(out)]) == 0
    student = json.loads((out / "config.json").read_text())["config"]["student"]
    assert student["reduction"] == "avgpool" and student["encoding"] == "amplitude"
    assert (student["ansatz"], student["layers"], student["readout"]) == ("hea", 1, "probs")
    assert student["head"] is None and student["angles"] is None
    assert student["noise_method"] is None and student["noise_trajectories"] is None
    best = json.loads((out / "best.json").read_text())
    assert best["student"] == student
    # The recorded config is a valid config: fed back, it asks for the same run.
    capsys.readouterr()
    assert main(["distill", "--config", str(_yaml_of(out, tmp_path)), "--out", str(out)]) == 0
    assert "resuming" not in capsys.readouterr().out  # finished: nothing to redo


def _yaml_of(run: Path, tmp_path: Path) -> Path:
    import yaml
    path = tmp_path / "again.yaml"
    path.write_text(yaml.safe_dump(json.loads((run / "config.json").read_text())["config"]))
    return path


def test_a_circuit_without_trainable_parameters_is_refused(monkeypatch, tmp_path, capsys):
    """A student kind that must learn in its circuit is refused when the built circuit
    has nothing to train (the paper-v1 student is the one kind allowed none)."""
    from torch import nn

    from qdistill import students
    kind = students.STUDENTS["paper-v2"]
    monkeypatch.setitem(students.STUDENTS, "paper-v2", students.StudentKind(
        lambda cfg, k, shape: nn.Sequential(nn.Flatten(), nn.Linear(64, k)), kind.options,
        True))
    out = tmp_path / "run"
    refused(capsys, [*STUDENT, "--teacher", "none", "--out", out],
            "this paper-v2 student's circuit has no trainable parameter")
    assert not out.exists()


# --- output directories: every command creates and probes them the same way ---------

def _commands(trained: dict[str, Path], out: Path) -> dict[str, list]:
    return {
        "distill": [*STUDENT, "--teacher", "none", "--out", out],
        "teacher": [*TEACHER, "--out", out],
        "export": ["export", "--run", trained["student"], "--test-index", "0", "--out", out],
        "evaluate": ["evaluate", "--run", trained["student"], "--shots", "10", "--out", out],
        "reproduce": ["reproduce", "paper-v1", "--quick", "--out", out],
    }


@pytest.mark.parametrize("command", ["distill", "teacher", "export", "evaluate", "reproduce"])
def test_out_under_a_file_is_one_line(trained, tmp_path, capsys, command):
    afile = tmp_path / "afile"
    afile.write_text("x")
    refused(capsys, _commands(trained, afile / "x")[command], "is not a directory")
    assert afile.read_text() == "x"


@pytest.mark.skipif(not Path("/sys/kernel").is_dir() or os.geteuid() != 0,
                    reason="needs /sys and root (where permission bits say yes)")
@pytest.mark.parametrize("command", ["distill", "teacher", "export", "evaluate", "reproduce"])
def test_out_where_mkdir_fails_even_for_root(trained, capsys, command):
    refused(capsys, _commands(trained, Path("/sys/kernel/qdistill-out"))[command],
            "does not accept new entries")
