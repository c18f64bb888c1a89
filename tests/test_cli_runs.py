"""Through ``qdistill.cli.parser.main``: a run's config.json fed back is the same run (reused,
not retrained), ``--json`` prints one JSON document, digits on distill's defaults says
every flag to add in its first message, and the digits extra is named when missing."""

import json
import sys

import pytest

from qdistill.cli.parser import main

TINY = ["--dataset", "digits", "--classes", "0-3", "--train-per-class", "20",
        "--test-per-class", "10", "--val-per-class", "5", "--student", "paper-v2",
        "--qubits", "2", "--epochs", "2", "--batch-size", "4", "--device", "cpu"]


@pytest.fixture(scope="module")
def student_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli-runs") / "run"
    assert main(["distill", *TINY, "--teacher", "mlp", "--teacher-epochs", "1",
                 "--out", str(out)]) == 0
    return out


def _epochs(run):
    return len((run / "metrics.jsonl").read_text().splitlines())


def test_config_json_fed_back_is_the_same_run_reused(student_run, capsys):
    capsys.readouterr()
    before = (student_run / "best.safetensors").read_bytes()
    assert main(["distill", "--config", str(student_run / "config.json"),
                 "--out", str(student_run)]) == 0
    out = capsys.readouterr().out
    assert "reused, not retrained" in out and " epoch 1/2" not in out
    assert _epochs(student_run) == 2
    assert (student_run / "best.safetensors").read_bytes() == before
    # --json says so too, and stdout is one JSON document
    assert main(["distill", "--config", str(student_run / "config.json"),
                 "--out", str(student_run), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["reused"] is True and doc["epochs_trained"] == 0
    assert doc["config"]["student"]["name"] == "paper-v2"
    # the same config with one option changed is another run: refused in that directory
    assert main(["distill", "--config", str(student_run / "config.json"), "--epochs", "3",
                 "--seed", "1", "--out", str(student_run)]) == 2
    assert "different run" in capsys.readouterr().err


def test_config_json_of_another_kind_of_run_is_refused(student_run, capsys):
    assert main(["teacher", "train", "--config", str(student_run / "config.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "config of a student run; use it with qdistill distill" \
        in err


def test_teacher_config_json_fed_back(tmp_path, capsys):
    run = tmp_path / "teacher"
    args = ["--arch", "mlp", "--dataset", "digits", "--classes", "0-3", "--epochs", "1",
            "--device", "cpu", "--out", str(run)]
    assert main(["teacher", "train", *args, "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["reused"] is False and first["epochs_trained"] == 1
    assert main(["teacher", "train", "--config", str(run / "config.json"), "--out", str(run),
                 "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["reused"] is True and again["test_acc"] == first["test_acc"]
    assert main(["teacher", "eval", "--run", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["test_acc"] == pytest.approx(first["test_acc"])


def test_evaluate_json_and_no_progress_bar_off_a_terminal(student_run, tmp_path, capsys):
    assert main(["evaluate", "--run", str(student_run), "--shots", "20,50", "--seeds", "2",
                 "--out", str(tmp_path / "ev"), "--json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert len(doc["rows"]) == 1 + 2 * 2  # exact, then 2 shot counts x 2 seeds
    assert set(doc["files"]) >= {"csv", "md"}
    assert "evaluate" not in captured.err  # stderr is not a terminal: no bar


def test_evaluate_shows_a_progress_bar_on_a_terminal(student_run, monkeypatch):
    import io

    from qdistill.experiments.robustness import robustness_rows

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    robustness_rows([student_run], [20], [], seeds=2)
    assert "evaluate:" in term.getvalue() and "/3 [" in term.getvalue()  # runs x settings x seeds


def test_digits_on_distill_defaults_names_every_flag_in_the_first_error(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["distill", "--dataset", "digits", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("qdistill: error: digits: 4 settings do not fit") and \
        err.count("\n") == 1
    for flag in ("--train-per-class 90 --val-per-class 43", "--test-per-class 44",
                 "--student paper-v2", "'mlp' teacher"):
        assert flag in err, flag
    assert not out.exists()
    # with those flags it runs (one epoch here, to keep the test short)
    assert main(["distill", "--dataset", "digits", "--train-per-class", "90",
                 "--val-per-class", "43", "--test-per-class", "44", "--student", "paper-v2",
                 "--teacher", "none", "--epochs", "1", "--batch-size", "32", "--device",
                 "cpu", "--out", str(out)]) == 0


def test_digits_without_scikit_learn_names_the_extra(monkeypatch, capsys):
    from qdistill.data import clear_memory_cache

    clear_memory_cache()
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn -> ImportError
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    try:
        assert main(["data", "info", "digits"]) == 2
    finally:
        clear_memory_cache()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'qdistill[digits]'" in err
