"""Caches are keyed on the content of the data, never on a dataset name or a path.

The issue: a teacher trained on the official MNIST was reused ("teacher lenet: cached
in ...") for ``--dataset mnist --data-dir MYDATA`` because ``data_dir`` was left out of
the cache key, and the student ended at chance. Now the teacher cache key, the teacher
logits cache and every run's ``config.json`` / ``result.json`` carry the fingerprint of
the data actually used (``Task.fingerprint()``): other images or labels under the same
options train another teacher; the same files in another directory hit the same cache.
Everything goes through the real command line (``qdistill.cli.parser.main``) on tiny IDX sets.
"""

import json
import re
import shutil
from pathlib import Path

import pytest
from test_data_sources import FILES, small_set, write_idx_dir

from qdistill.cli.parser import main
from qdistill.data import cache, cache_dir, make_task

pytestmark = pytest.mark.usefixtures("isolated_data")  # see conftest.py

HW = (8, 8)  # 8x8 images: the MLP teacher and a paper-v2 student train in well under 1 s
TEACHER = ["teacher", "train", "--arch", "mlp", "--dataset", "mnist", "--classes", "0,1",
           "--epochs", "1", "--batch-size", "16", "--device", "cpu"]
STUDENT = ["distill", "--student", "paper-v2", "--qubits", "4", "--dataset", "mnist",
           "--classes", "0,1", "--train-per-class", "8", "--test-per-class", "5",
           "--val-per-class", "3", "--epochs", "1", "--device", "cpu",
           "--teacher", "mlp", "--teacher-epochs", "1"]


def dataset(seed=0):
    """60 train / 30 test 8x8 images, labels 0,1,2 repeating (20 / 10 per class)."""
    return small_set(n_train=60, n_test=30, hw=HW, seed=seed)


def relabelled(arrays):
    """The same images, the labels of classes 0 and 1 swapped."""
    out = dict(arrays)
    for f in (FILES[1], FILES[3]):
        labels = arrays[f].copy()
        labels[arrays[f] == 0], labels[arrays[f] == 1] = 1, 0
        out[f] = labels
    return out


def run(capsys, argv):
    """Run the CLI; return stdout (asserting success)."""
    rc = main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    return captured.out


def checkpoint_of(out):
    return re.search(r"^checkpoint: (.+)$", out, re.M).group(1)


def teacher_dirs():
    root = cache_dir() / "teachers"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def fingerprints(run_dir):
    """(config.json's, result.json's, best.json's) data fingerprint of a run."""
    return tuple(json.loads((run_dir / f).read_text()).get("data_fingerprint")
                 for f in ("config.json", "result.json", "best.json"))


def teacher_task_fingerprint(data_dir):
    return make_task("mnist", "0,1", seed=0, data_dir=data_dir).fingerprint()


def test_task_fingerprint_is_the_content(tmp_path):
    a = write_idx_dir(tmp_path / "a", dataset(0))
    a_gz = write_idx_dir(tmp_path / "a-gz", dataset(0), gz=True)
    b = write_idx_dir(tmp_path / "b", dataset(1))
    fp = teacher_task_fingerprint(a)
    assert re.fullmatch(r"[0-9a-f]{64}", fp)
    assert teacher_task_fingerprint(a_gz) == fp  # same content, other files and place
    assert teacher_task_fingerprint(b) != fp  # other images
    assert teacher_task_fingerprint(write_idx_dir(tmp_path / "r", relabelled(dataset(0)))) \
        != fp  # same images, other labels
    # ...and another split of the same data is other data
    assert make_task("mnist", "0,1", seed=1, data_dir=a).fingerprint() != fp


def test_teacher_cache_is_keyed_on_the_data_not_its_directory(tmp_path, capsys):
    a = write_idx_dir(tmp_path / "A", dataset(0))
    b = write_idx_dir(tmp_path / "B", dataset(1))  # other images and labels
    out_a = run(capsys, [*TEACHER, "--data-dir", a])
    assert "cached" not in out_a
    out_b = run(capsys, [*TEACHER, "--data-dir", b])
    assert "cached" not in out_b  # the issue: this reused A's teacher
    dir_a, dir_b = checkpoint_of(out_a), checkpoint_of(out_b)
    assert dir_a != dir_b and len(teacher_dirs()) == 2

    # The same content in another directory (gzipped, even): the cache is hit.
    copy = write_idx_dir(tmp_path / "copy-of-A", dataset(0), gz=True)
    out_copy = run(capsys, [*TEACHER, "--data-dir", copy])
    assert "cached" in out_copy and checkpoint_of(out_copy) == dir_a
    assert len(teacher_dirs()) == 2

    # Same images, other labels: another teacher.
    relab = write_idx_dir(tmp_path / "relabelled", relabelled(dataset(0)))
    out_relab = run(capsys, [*TEACHER, "--data-dir", relab])
    assert "cached" not in out_relab and len(teacher_dirs()) == 3

    # Every teacher run records the fingerprint of its data in config.json, result.json
    # and the checkpoint's metadata.
    for d, data in ((dir_a, a), (dir_b, b), (checkpoint_of(out_relab), relab)):
        assert fingerprints(Path(d)) == (teacher_task_fingerprint(data),) * 3
    # A user's own files never enter the decoded-array cache of the official data.
    assert not (cache_dir() / "mnist").exists()


def test_files_replaced_in_the_same_directory_are_other_data(tmp_path, capsys):
    d = write_idx_dir(tmp_path / "data", dataset(0))
    first = checkpoint_of(run(capsys, [*TEACHER, "--data-dir", d]))
    write_idx_dir(d, dataset(1))  # same names, same sizes, other content
    out = run(capsys, [*TEACHER, "--data-dir", d])
    assert "cached" not in out and checkpoint_of(out) != first


def test_teacher_run_with_out_records_the_fingerprint(tmp_path, capsys):
    a = write_idx_dir(tmp_path / "A", dataset(0))
    out = tmp_path / "teacher-run"
    run(capsys, [*TEACHER, "--data-dir", a, "--out", out])
    assert fingerprints(out) == (teacher_task_fingerprint(a),) * 3


def test_given_data_dir_never_reads_the_decoded_array_cache(tmp_path, capsys, monkeypatch):
    def no_cache(name):
        raise AssertionError(f"the {name} cache was read although --data-dir was given")

    monkeypatch.setattr(cache, "load_arrays", no_cache)
    a = write_idx_dir(tmp_path / "A", dataset(0))
    run(capsys, [*TEACHER, "--data-dir", a])
    assert not (cache_dir() / "mnist").exists()


def test_student_runs_and_teacher_logits_are_keyed_on_the_data(tmp_path, capsys):
    a = write_idx_dir(tmp_path / "A", dataset(0))
    b = write_idx_dir(tmp_path / "B", dataset(1))
    copy = tmp_path / "copy-of-A"
    shutil.copytree(a, copy)
    logits = cache_dir() / "teacher_logits"

    def n_logits():
        return len({p.name.split(".")[0] for p in logits.iterdir()}) if logits.exists() else 0

    out_a = run(capsys, [*STUDENT, "--data-dir", a, "--out", tmp_path / "run-a"])
    assert "cached" not in out_a and n_logits() == 1
    out_b = run(capsys, [*STUDENT, "--data-dir", b, "--out", tmp_path / "run-b"])
    assert "cached" not in out_b and n_logits() == 2  # other teacher, other images
    out_c = run(capsys, [*STUDENT, "--data-dir", copy, "--out", tmp_path / "run-c"])
    assert "cached" in out_c and n_logits() == 2  # same content: both caches hit
    assert len(teacher_dirs()) == 2

    student_fp = {name: make_task("mnist", "0,1", train_per_class=8, test_per_class=5,
                                  val_per_class=3, seed=0, data_dir=d).fingerprint()
                  for name, d in (("a", a), ("b", b), ("c", copy))}
    assert student_fp["a"] == student_fp["c"] != student_fp["b"]
    for name, data in (("a", a), ("b", b), ("c", copy)):
        run_dir = tmp_path / f"run-{name}"
        assert fingerprints(run_dir) == (student_fp[name],) * 3
        meta = json.loads((run_dir / "best.json").read_text())
        assert meta["teacher"]["data_fingerprint"] == teacher_task_fingerprint(data)
    assert json.loads((tmp_path / "run-a" / "result.json").read_text())["test_acc"] == \
        json.loads((tmp_path / "run-c" / "result.json").read_text())["test_acc"]
    # The baseline (no teacher) records its data too.
    run(capsys, [*STUDENT, "--teacher", "none", "--data-dir", b, "--out", tmp_path / "base"])
    assert fingerprints(tmp_path / "base") == (student_fp["b"],) * 3


def test_fingerprint_covers_the_labels_as_remapped():
    # Classes 0,1 and 1,0 are the same images with the labels swapped: other data.
    assert make_task("digits", "0,1").fingerprint() != make_task("digits", "1,0").fingerprint()
    assert make_task("digits", "0,1").fingerprint() == make_task("digits", [0, 1]).fingerprint()


def test_evaluating_a_run_on_data_that_changed_is_refused(tmp_path, capsys):
    """evaluate / export / teacher eval rebuild the run's task from its config: when the
    files behind it were replaced, the fingerprint no longer matches and they refuse
    (teacher eval --data-dir evaluates on other data on purpose, and says so)."""
    from test_bad_input import refused

    a = write_idx_dir(tmp_path / "A", dataset(0))
    student = tmp_path / "student"
    run(capsys, [*STUDENT, "--teacher", "none", "--data-dir", a, "--out", student])
    teacher = tmp_path / "teacher"
    run(capsys, [*TEACHER, "--data-dir", a, "--out", teacher])
    evaluated = json.loads(run(capsys, ["teacher", "eval", "--checkpoint", teacher]))
    assert evaluated["same_data_as_training"] is True
    b = write_idx_dir(tmp_path / "B", dataset(1))
    other = json.loads(run(capsys, ["teacher", "eval", "--checkpoint", teacher,
                                    "--data-dir", b]))
    assert other["same_data_as_training"] is False
    shutil.rmtree(a)
    write_idx_dir(a, dataset(1))  # other images, same place
    message = "is not the data this run was trained on"
    refused(capsys, ["evaluate", "--run", student, "--out", tmp_path / "r"], message)
    refused(capsys, ["export", "--run", student, "--test-index", "0",
                     "--out", tmp_path / "e"], message)
    refused(capsys, ["teacher", "eval", "--checkpoint", teacher], message)
    assert not (tmp_path / "r").exists() and not (tmp_path / "e").exists()
