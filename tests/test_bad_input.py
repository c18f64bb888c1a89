"""Bad input through the real command line (issue #5), one test per kind of mistake.

Every case goes through ``qdistill ...`` (``cli.main``) and must end the same way: exit
status 2, exactly one line on stderr that starts with ``qdistill: error:`` and names the
problem, no traceback, and nothing partial on disk (no output directory, no teacher
trained into the cache, a run directory left byte for byte as it was). The one
exception is the non-finite (NaN or inf) stop, which by design keeps the checkpoint of the
last good epoch.
"""

import gzip
import json
import os
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_data_sources import small_set, write_idx_dir  # the same tiny IDX sets

from qdistill.cli.parser import main
from qdistill.data import cache_dir, core
from qdistill.data.cache import save_arrays

IDX = core.IDX_FILES
SMALL = ["--train-per-class", "20", "--test-per-class", "10", "--val-per-class", "5"]
# A 4-qubit paper-v2 student on 5 digit classes: trains in a fraction of a second.
STUDENT = ["distill", "--student", "paper-v2", "--qubits", "4", "--dataset", "digits",
           "--classes", "0-4", *SMALL, "--epochs", "1", "--device", "cpu"]
TEACHER = ["teacher", "train", "--arch", "mlp", "--dataset", "digits", "--classes", "0-4",
           "--epochs", "1", "--batch-size", "64", "--device", "cpu"]


pytestmark = pytest.mark.usefixtures("isolated_data")  # see conftest.py


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny teacher (MLP, digits 0-4) and a tiny student run (paper-v2, no teacher)."""
    root = tmp_path_factory.mktemp("trained")
    assert main([*TEACHER, "--out", str(root / "teacher")]) == 0
    assert main([*STUDENT, "--teacher", "none", "--out", str(root / "student")]) == 0
    return {"teacher": root / "teacher", "student": root / "student"}


def refused(capsys, argv, *patterns: str) -> str:
    """Run the CLI; assert exit 2 and one error line matching every regex in patterns."""
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    lines = [x for x in err.strip().splitlines() if not x.startswith("qdistill: warning:")]
    assert len(lines) == 1, err
    assert lines[0].startswith("qdistill: error: ")
    for pattern in patterns:
        assert re.search(pattern, lines[0]), (pattern, lines[0])
    return lines[0]


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def no_teacher_trained() -> bool:
    return not (cache_dir() / "teachers").exists()


def write_idx(directory: Path, n_train=30, n_test=12, hw=(12, 12), gz=False) -> Path:
    """A well-formed user IDX set (not the official files: loads as 'own data')."""
    return write_idx_dir(directory, small_set(n_train, n_test, hw), gz=gz)


# --- data ----------------------------------------------------------------------------


def test_missing_dataset_names_every_source_and_how_to_get_it(tmp_path, monkeypatch, capsys):
    # Fashion-MNIST with no data dir, an empty cache, no Debian package, offline.
    monkeypatch.setattr(core, "DEBIAN_FASHION_DIR", tmp_path / "no-debian-package")
    out = tmp_path / "out"
    refused(capsys, ["teacher", "train", "--dataset", "fashion-mnist", "--out", out],
            r"^qdistill: error: fashion-mnist: no source has the data",
            r"1\) directory .*QDISTILL_DATA_DIR not set\): skipped",
            r"2\) cache .*: skipped: no cached arrays",
            r"3\) Debian dataset-fashion-mnist .*apt-get install dataset-fashion-mnist",
            r"4\) download from http\S+: skipped: offline .*QDISTILL_OFFLINE=1",
            r"Pass --data-dir DIR \(or set QDISTILL_DATA_DIR\) with the four IDX files")
    assert not out.exists()


def _truncated(d: Path) -> str:
    p = d / IDX[0]
    p.write_bytes(p.read_bytes()[:-7])
    return r"truncated IDX file: header says \(30, 12, 12\) -> 4336 bytes, file has 4329"


def _wrong_magic(d: Path) -> str:
    p = d / IDX[0]
    p.write_bytes((0x801).to_bytes(4, "big") + p.read_bytes()[4:])
    return r"wrong IDX magic 0x00000801, expected 0x00000803 .*not an IDX image file"


def _bad_gzip(d: Path) -> str:
    (d / IDX[0]).unlink()
    (d / f"{IDX[0]}.gz").write_bytes(b"\x1f\x8b\x08\x00garbage, not deflate")
    return r"\.gz: bad gzip file"


def _truncated_gzip(d: Path) -> str:
    data = (d / IDX[0]).read_bytes()
    (d / IDX[0]).unlink()
    (d / f"{IDX[0]}.gz").write_bytes(gzip.compress(data)[:-30])
    return r"\.gz: bad gzip file \(Compressed file ended"


def _trailing_bytes(d: Path) -> str:
    p = d / IDX[0]
    p.write_bytes(p.read_bytes() + b"\0" * 5)
    return r"5 unexpected bytes after the IDX data of shape \(30, 12, 12\)"


@pytest.mark.parametrize("corrupt", [_truncated, _wrong_magic, _bad_gzip, _truncated_gzip,
                                     _trailing_bytes])
def test_corrupt_idx_or_gzip_file_is_named(tmp_path, capsys, corrupt):
    d = write_idx(tmp_path / "data")
    expected = corrupt(d)
    out = tmp_path / "out"
    refused(capsys, ["teacher", "train", "--arch", "mlp", "--dataset", "mnist", "--classes",
                     "0-2", "--data-dir", d, "--out", out],
            re.escape(str(d / IDX[0])), expected, "point --data-dir")
    assert not out.exists()
    assert not (cache_dir() / "mnist").exists()  # nothing cached from a broken file


@pytest.mark.parametrize("where", ["cache", "package"])
def test_wrong_checksum_is_refused_where_the_source_claims_official_data(
        tmp_path, monkeypatch, capsys, where):
    # Well-formed IDX content that is not the official Fashion-MNIST, found where only
    # the official files may be: the .npy cache, or the Debian package's directory.
    rng = np.random.default_rng(1)
    arrays = {"train_images": rng.integers(0, 256, (20, 1, 28, 28), dtype=np.uint8),
              "train_labels": np.arange(20) % 10,
              "test_images": rng.integers(0, 256, (10, 1, 28, 28), dtype=np.uint8),
              "test_labels": np.arange(10) % 10}
    monkeypatch.setattr(core, "DEBIAN_FASHION_DIR", tmp_path / "debian")
    if where == "cache":
        assert save_arrays("fashion-mnist", arrays, "test") is not None
        fix = r"delete .*fashion-mnist and run again to rebuild the cache"
    else:
        write_idx(tmp_path / "debian", n_train=20, n_test=10, hw=(28, 28), gz=True)
        fix = r"reinstall it: apt-get install --reinstall dataset-fashion-mnist"
    out = tmp_path / "out"
    refused(capsys, ["teacher", "train", "--dataset", "fashion-mnist", "--out", out],
            r"train-images-idx3-ubyte", r"MD5 [0-9a-f]{32} does not match the official "
            r"(fashion-mnist )?f4a8712d7a061bf5bd6d2ca38dc4d50a", fix)
    assert not out.exists()


def test_cifar_directory_with_a_missing_batch(tmp_path, capsys):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    rng = np.random.default_rng(2)
    for name in [f"data_batch_{i}" for i in (1, 2, 4, 5)] + ["test_batch"]:  # no batch 3
        batch = {b"data": rng.integers(0, 256, (10, 3072), dtype=np.uint8),
                 b"labels": [int(v) for v in rng.integers(0, 10, 10)]}
        (d / name).write_bytes(pickle.dumps(batch, protocol=2))
    out = tmp_path / "out"
    refused(capsys, ["teacher", "train", "--dataset", "cifar10", "--data-dir", tmp_path,
                     "--out", out],
            re.escape(str(d / "data_batch_3")) + r": missing CIFAR-10 batch",
            r"re-extract cifar-10-python\.tar\.gz")
    assert not out.exists()


@pytest.mark.parametrize("spec,problem", [
    ("0-12", r"classes \[10, 11, 12\] out of range"),
    ("10", r"classes \[10\] out of range"),
    ("", r"bad class spec ''"),
    ("3,3", r"classes \[3\] listed twice"),
])
def test_class_subset_outside_the_dataset_or_empty(tmp_path, capsys, spec, problem):
    out = tmp_path / "out"
    refused(capsys, [*TEACHER, "--classes", spec, "--out", out],
            problem, r"valid classes are 0\.\.9")
    assert not out.exists()


@pytest.mark.parametrize("option,problem", [
    (["--train-per-class", "500"],
     r"class 0 \(0\): train_per_class=500 requested, only 134 training images available"),
    (["--test-per-class", "60"],
     r"class 0 \(0\): test_per_class=60 requested, only 44 test images available"),
    (["--train-per-class", "100", "--val-per-class", "40"],
     r"val_per_class=40 requested, only 34 training images left after the first 100"),
])
def test_per_class_limit_larger_than_available(tmp_path, capsys, option, problem):
    out = tmp_path / "out"
    refused(capsys, [*TEACHER, *option, "--out", out], problem)
    assert not out.exists()


# --- students, names and settings -----------------------------------------------------


def test_too_few_qubits_for_the_classes(tmp_path, capsys):
    # Refused before the (cacheable, possibly slow) teacher is trained.
    out = tmp_path / "out"
    refused(capsys, [*STUDENT, "--student", "quantum", "--reduction", "avgpool", "--classes",
                     "0-7", "--qubits", "2", "--teacher", "mlp", "--out", out],
            r"2 qubits give 4 basis states, fewer than the 8 classes; use at least 3 qubits")
    refused(capsys, [*STUDENT, "--student", "quantum", "--reduction", "avgpool",
                     "--readout", "z", "--qubits", "4", "--teacher", "mlp", "--out", out],
            r"5 classes need at least 5 qubits, got 4")
    assert not out.exists() and no_teacher_trained()


def test_qubits_beyond_memory_refused_before_allocating(tmp_path, capsys):
    # 2**40 amplitudes x 8 bytes = 8 TiB: estimated and refused, never allocated.
    out = tmp_path / "out"
    for student in (["--student", "paper-v2"], ["--student", "quantum", "--reduction",
                                                "avgpool"]):
        refused(capsys, [*STUDENT, *student, "--qubits", "40", "--teacher", "mlp",
                         "--out", out],
                r"statevector of 40 qubits x batch 1 in torch\.complex64 needs 8\.19e\+03 GiB,"
                r" more than the [0-9.e+]+ GiB available on cpu", "Use fewer qubits")
    assert not out.exists() and no_teacher_trained()


def test_batch_beyond_memory_refused_before_training(tmp_path, capsys):
    # 28 qubits: one state is 2 GiB (the build passes), a batch of 1024 is 2 TiB.
    out = tmp_path / "out"
    big = [*STUDENT, "--student", "quantum", "--reduction", "avgpool", "--encoding", "angle",
           "--qubits", "28", "--teacher", "mlp", "--out", out]
    refused(capsys, [*big, "--batch-size", "1024"],
            r"28 qubits x batch 1024 in torch\.complex64 needs 2\.05e\+03 GiB",
            r"Lower --batch-size\.$")
    refused(capsys, [*big, "--batch-size", "1"],  # evaluation batches default to 1024
            r"28 qubits x batch 1024", r"Lower --set train\.eval_batch_size=N\.$")
    assert not out.exists() and no_teacher_trained()


@pytest.mark.parametrize("argv,message", [
    ([*TEACHER, "--arch", "resnet"],
     "unknown teacher 'resnet'; valid: alexnet, ensemble, lenet, mlp"),
    ([*TEACHER, "--dataset", "imagenet"],
     "unknown dataset 'imagenet'; valid: mnist, fashion-mnist, cifar10, digits"),
    ([*STUDENT, "--teacher", "resnet"],
     "unknown teacher 'resnet'; valid: none, alexnet, ensemble, lenet, mlp, or a teacher "
     "run directory"),
    ([*STUDENT, "--teacher", "mlp", "--student", "qnn"],
     "unknown student 'qnn'; valid: paper-v1, paper-v2, quantum, or your own as FILE.py:NAME"),
    ([*STUDENT, "--teacher", "mlp", "--reduction", "resize"],
     "unknown reduction 'resize'; valid: avgpool, crop, fc, maxpool, pca"),
    ([*STUDENT, "--teacher", "mlp", "--encoding", "iqp"],
     "unknown encoding 'iqp'; valid: amplitude, angle, dense"),
    ([*STUDENT, "--teacher", "mlp", "--student", "quantum", "--reduction", "avgpool",
      "--ansatz", "ring"], "unknown ansatz 'ring'; valid: hea, "),  # ... qcnn, strong
    ([*STUDENT, "--teacher", "mlp", "--kd-variant", "fitnet"],
     "unknown KD loss 'fitnet'; valid: dkd, hint, hinton, learned-scale, lskd, paper, pseudo"),
    (["distill", "--student", "paper-v1", "--dataset", "mnist", "--teacher", "mlp",
      "--angles", "quarter"], "unknown paper-v1 angle range 'quarter'; valid: half-pi, pi"),
    (["reproduce", "paper-v1", "--quick", "--angles", "quarter"],
     "unknown --angles 'quarter'; valid: half-pi, pi"),
    (["reproduce", "paper-v1", "--quick", "--head", "sigmoid"],
     "unknown --head 'sigmoid'; valid: logprob, paper"),
])
def test_unknown_name_lists_the_valid_ones(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    refused(capsys, [*argv, "--out", out], re.escape(message))
    assert not out.exists() and no_teacher_trained()


@pytest.mark.parametrize("option,message", [
    (["--temperature", "0"], "argument --temperature: must be > 0, got 0"),
    (["--temperature", "-3"], "argument --temperature: must be > 0, got -3"),
    (["--temperature", "nan"], "argument --temperature: must be > 0, got nan"),
    (["--temperature", "inf"], "argument --temperature: must be > 0, got inf"),
    (["--alpha", "1.5"], r"argument --alpha: must be 0\.\.1, got 1.5"),
    (["--alpha", "-0.1"], r"argument --alpha: must be 0\.\.1, got -0.1"),
    (["--alpha", "nan"], r"argument --alpha: must be 0\.\.1, got nan"),
    # the same ranges hold for YAML / --set values, and name the option
    (["--set", "kd.temperature=0"], r"--temperature \(kd\.temperature\): must be > 0"),
    (["--set", "kd.alpha=.nan"], r"--alpha \(kd\.alpha\): must be 0\.\.1, got nan"),
])
def test_invalid_temperature_or_alpha(tmp_path, capsys, option, message):
    out = tmp_path / "out"
    refused(capsys, [*STUDENT, "--teacher", "mlp", *option, "--out", out], message)
    assert not out.exists() and no_teacher_trained()


# --- checkpoints and teachers ----------------------------------------------------------


def _truncate_weights(run: Path) -> None:
    w = run / "best.safetensors"
    w.write_bytes(w.read_bytes()[: len(w.read_bytes()) // 2])


def _edit_meta(**changes):
    def edit(run: Path) -> None:
        meta = json.loads((run / "best.json").read_text())
        meta.update(changes)
        (run / "best.json").write_text(json.dumps(meta))
    return edit


def _truncate_last(run: Path) -> None:
    w = run / "last.safetensors"
    w.write_bytes(w.read_bytes()[:-100])


@pytest.mark.parametrize("which,damage,argv,message", [
    ("teacher", _truncate_weights, ["teacher", "eval", "--checkpoint", "{run}"],
     r"best\.safetensors does not match its metadata best\.json \(truncated or replaced\)"),
    ("teacher", _edit_meta(arch="alexnet"), ["teacher", "eval", "--checkpoint", "{run}"],
     r"checkpoint .*best does not fit this model \(.*"),
    ("teacher", _edit_meta(num_classes=3), ["teacher", "eval", "--checkpoint", "{run}"],
     r"checkpoint .*best does not fit this model \(size mismatch for net\.3\.weight"),
    ("teacher", _truncate_weights, [*STUDENT, "--classes", "0-4", "--teacher", "{run}"],
     r"truncated or replaced"),
    ("student", None, [*STUDENT, "--teacher", "{run}"],
     r"best is not a teacher checkpoint \(kind='student'\)"),
    ("teacher", None, ["export", "--run", "{run}", "--test-index", "0"],
     r"best is not a student checkpoint \(kind='teacher'\)"),
    ("student", _edit_meta(num_classes=3), ["export", "--run", "{run}", "--test-index", "0"],
     r"does not fit this model \(size mismatch for head\.weight"),
    # Resuming into a run directory: a truncated checkpoint, another arch / class count.
    ("teacher", _truncate_last, [*TEACHER, "--out", "{run}"],
     r"last\.safetensors does not match its metadata last\.json \(truncated or replaced\)"),
    ("teacher", None, [*TEACHER, "--arch", "alexnet", "--out", "{run}"],
     r"holds a checkpoint of a different run; choose another output directory"),
    ("teacher", None, [*TEACHER, "--classes", "0-3", "--out", "{run}"],
     r"holds a checkpoint of a different run"),
])
def test_broken_or_mismatched_checkpoint(trained, tmp_path, capsys, which, damage, argv,
                                         message):
    run = tmp_path / which
    shutil.copytree(trained[which], run)
    if damage is not None:
        damage(run)
    out = tmp_path / "out"
    if argv[0] == "distill":
        argv = [*argv, "--out", out]
    before = snapshot(tmp_path)
    refused(capsys, [str(a).replace("{run}", str(run)) for a in argv], message)
    assert snapshot(tmp_path) == before  # nothing written, nothing repaired behind our back
    assert not out.exists() and no_teacher_trained()


def test_teacher_of_other_classes_or_dataset_is_refused(trained, tmp_path, capsys):
    out = tmp_path / "out"
    refused(capsys, [*STUDENT, "--classes", "0-2", "--teacher", trained["teacher"],
                     "--out", out],
            r"teacher .* was trained on classes=\[0, 1, 2, 3, 4\] but the student's task has "
            r"classes=\[0, 1, 2\]; train a teacher for this task")
    # A teacher of another dataset with the same class numbers (a user's own IDX set
    # loaded as "mnist").
    write_idx(tmp_path / "idx")
    other = tmp_path / "mnist-teacher"
    assert main(["teacher", "train", "--arch", "mlp", "--dataset", "mnist", "--classes",
                 "0-2", "--data-dir", str(tmp_path / "idx"), "--epochs", "1",
                 "--out", str(other)]) == 0
    capsys.readouterr()
    refused(capsys, [*STUDENT, "--classes", "0-2", "--teacher", other, "--out", out],
            r"was trained on dataset='mnist' but the student's task has dataset='digits'")
    assert not out.exists()


# --- config files and output directories -----------------------------------------------


@pytest.mark.parametrize("text,message", [
    ("train:\n  epoch: 3\n",
     r"unknown config key\(s\) \['epoch'\] in section 'train'; valid: \['batch_size'"),
    ("arch: mlp\nteacher: lenet\n", r"unknown config key\(s\) \['teacher'\]; valid: "),
    # a key with an option of its own is named by both (YAML and --set alike)
    ("train:\n  epochs: many\n", r"--epochs \(train\.epochs\): expected int, got 'many'"),
    ("train:\n  epochs: 2.5\n", r"--epochs \(train\.epochs\): expected int, got 2\.5"),
    ("train:\n  epochs: 0\n", r"--epochs \(train\.epochs\): must be 1\.\.100000, got 0"),
    ("train:\n  deterministic: 3\n", r"train\.deterministic\): expected bool, got 3"),
    ("data: 5\n", r"config section 'data' must be a mapping, got 5"),
    ("- arch\n- mlp\n", r"must hold a mapping at the top level"),
    ("train: [1, 2\n", r"is not valid YAML \(line 2, column 1\): expected ',' or ']'"),
])
def test_yaml_config_with_unknown_key_or_wrong_type(tmp_path, capsys, text, message):
    config = tmp_path / "teacher.yaml"
    config.write_text(text)
    out = tmp_path / "out"
    refused(capsys, ["teacher", "train", "--config", config, "--out", out], message)
    assert not out.exists()


def _commands(trained, out):
    return {
        "teacher train": [*TEACHER, "--out", out],
        "distill": [*STUDENT, "--teacher", "mlp", "--out", out],
        "reproduce": ["reproduce", "paper-v1", "--quick", "--workers", "1", "--out", out],
        "export": ["export", "--run", trained["student"], "--test-index", "0", "--out", out],
    }


@pytest.mark.parametrize("command", ["teacher train", "distill", "reproduce", "export"])
def test_output_directory_that_cannot_be_written(trained, tmp_path, capsys, command):
    # Tests run as root, for whom permissions do not stop writes: a path under a regular
    # file (or the file itself) cannot be a directory for anyone.
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    for out in (blocker / "sub" / "dir", blocker):
        refused(capsys, _commands(trained, out)[command],
                r"cannot write the \w+ ?\w* directory " + re.escape(str(out)),
                re.escape(f"{blocker} is not a directory; choose another path"))
    assert blocker.read_text() == "not a directory\n"
    assert [p.name for p in tmp_path.iterdir()] == ["a-file"]
    assert no_teacher_trained()


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory this process may not write into: a 0o555 one for a normal user; for
    root (whom permissions do not stop), /proc/sys, which the kernel keeps read-only."""
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        yield locked
        locked.chmod(0o755)
    elif Path("/proc/sys").is_dir() and not os.access("/proc/sys", os.W_OK):
        yield Path("/proc/sys")
    else:
        pytest.skip("no directory here that this user cannot write")


@pytest.mark.parametrize("command", ["teacher train", "distill", "reproduce", "export"])
def test_output_directory_without_write_permission(trained, read_only_dir, tmp_path, capsys,
                                                   command):
    before = sorted(read_only_dir.iterdir())
    out = read_only_dir / "qdistill-out"
    refused(capsys, _commands(trained, out)[command], "^qdistill: error: cannot write the ",
            re.escape(f"{out}: no write permission on {read_only_dir}; choose another path"))
    assert sorted(read_only_dir.iterdir()) == before and no_teacher_trained()
