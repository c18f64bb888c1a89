"""The qdistill command line: help everywhere, a tiny end-to-end run, one-line errors."""

import json
import subprocess
import sys

import pytest

from qdistill.cli.parser import main

SUBCOMMANDS = [[], ["data"], ["data", "info"], ["teacher"], ["teacher", "train"],
               ["teacher", "eval"]]


@pytest.mark.parametrize("cmd", SUBCOMMANDS)
def test_help(cmd, capsys):
    assert main([*cmd, "--help"]) == 0
    assert "usage: qdistill" in capsys.readouterr().out


def test_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "qdistill", "--version"], capture_output=True,
                         text=True, check=True)
    assert out.stdout.startswith("qdistill ")


def test_data_info_digits(capsys):
    assert main(["data", "info", "digits"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["dataset"] == "digits" and info["available"]


def test_teacher_train_eval_and_cache(tmp_path, capsys):
    args = ["teacher", "train", "--arch", "mlp", "--dataset", "digits", "--classes", "0-4",
            "--epochs", "2", "--batch-size", "32", "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out
    assert (tmp_path / "run" / "best.safetensors").is_file()
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 2
    assert main(["teacher", "eval", "--run", str(tmp_path / "run")]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["classes"] == [0, 1, 2, 3, 4] and ev["test_acc"] > 0.8
    # --checkpoint, the old spelling, still works: the same document, and a warning
    assert main(["teacher", "eval", "--checkpoint", str(tmp_path / "run")]) == 0
    old = capsys.readouterr()
    assert json.loads(old.out) == ev
    assert old.err == "qdistill: warning: --checkpoint is deprecated; use --run\n"
    # Without --out the teacher is cached by config: the second call loads, not trains.
    assert main(args) == 0
    assert main(args) == 0
    assert "cached in" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["teacher", "train", "--arch", "resnet", "--dataset", "digits"], "unknown teacher"),
    (["teacher", "train", "--dataset", "nope"], "nope"),
    (["teacher", "train", "--dataset", "digits", "--classes", "0-12"], "class"),
    (["teacher", "train", "--set", "train.epoch=3"], "unknown config key"),
    (["teacher", "eval", "--run", "/nonexistent"], "does not exist"),
    (["teacher", "eval", "--checkpoint", "/nonexistent"], "does not exist"),
])
def test_user_errors_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("qdistill: error:") and message in err and "\n" not in err
