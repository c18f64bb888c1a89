"""Bring your own teacher (``--teacher FILE.py:NAME [--teacher-weights W]``, ``--teacher
FILE.onnx``), end to end through the real command line on the 8x8 digits.

What is checked: the soft targets are the user's module's own logits (read back from
the logits cache under the hash the run records); without weights the module is trained
once with the teacher protocol and cached by the file's content; factories and no-argument
classes; an ONNX teacher gives the torch model's logits; every kind of bad input exits 2
with one line and writes nothing (see tests/test_bad_input.py).
"""

import hashlib
import json
import sys
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from test_bad_input import refused
from torch import nn

from qdistill.cli.parser import main
from qdistill.data import cache_dir
from qdistill.distillation.soft_targets import _logits_key
from qdistill.teachers.user import PyTeacher, load_onnx_teacher
from qdistill.training.evaluation import as_float
from qdistill.training.tasks import task_of_run

pytestmark = pytest.mark.usefixtures("isolated_data")  # own cache dir per test

K, SHAPE = 4, (1, 8, 8)
STUDENT = ["distill", "--dataset", "digits", "--classes", "0-3", "--train-per-class", "20",
           "--test-per-class", "10", "--val-per-class", "5", "--epochs", "1", "--device",
           "cpu", "--student", "paper-v2", "--qubits", "4"]

TEACHER_PY = '''
import torch
from torch import nn

SIZE = 3


class SmallNet(nn.Module):
    def __init__(self, num_classes, image_shape):
        super().__init__()
        c, h, w = image_shape
        self.conv = nn.Conv2d(c, 4, 3, padding=1)
        self.fc = nn.Linear(4 * h * w, num_classes)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


class Fixed(nn.Module):
    """No constructor arguments: built for 1x8x8 images and 4 classes."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 4)

    def forward(self, x):
        return self.fc(x.flatten(1))


class Wide(nn.Module):
    """10 outputs, whatever the task."""

    def __init__(self, num_classes, image_shape):
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(x.flatten(1))


class NotAModule:
    pass


def make_teacher(num_classes: int, image_shape):
    return SmallNet(num_classes, image_shape)


def needs_three(a, b, c):
    return SmallNet(a, b)
'''


@pytest.fixture
def teacher_py(tmp_path) -> Path:
    path = tmp_path / "teachers_src" / "my_teacher.py"
    path.parent.mkdir()
    path.write_text(TEACHER_PY)
    return path


def random_weights(path: Path, name: str, out: Path, seed: int = 1) -> nn.Module:
    """A randomly initialised NAME from the file, its weights saved to ``out``."""
    torch.manual_seed(seed)
    model = PyTeacher(path, name).build(K, SHAPE)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out))
    return model.eval()


def distill(capsys, *argv) -> tuple[Path, dict, str]:
    """Run ``qdistill distill``; return (run dir, best.json, stdout)."""
    out = Path(argv[argv.index("--out") + 1])
    rc = main([*STUDENT, *map(str, argv)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    return out, json.loads((out / "best.json").read_text()), captured.out


def cached_soft_targets(meta: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(cached teacher logits under the hash the run recorded, the run's train images)."""
    from safetensors.torch import load_file
    images = task_of_run(meta).train.images
    key = _logits_key({"weights_sha256": meta["teacher"]["weights_sha256"]}, images,
                      "uint8/255")
    path = cache_dir() / "teacher_logits" / f"{key}.safetensors"
    assert path.is_file(), sorted((cache_dir() / "teacher_logits").iterdir())
    return load_file(str(path))["logits"], images


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def nothing_written(out: Path) -> bool:
    return not out.exists() and not (cache_dir() / "teachers").exists() and \
        not (cache_dir() / "teacher_logits").exists()


# --- FILE.py:NAME --------------------------------------------------------------------


def test_py_teacher_with_weights_gives_its_own_logits(teacher_py, tmp_path, capsys):
    weights = tmp_path / "w.safetensors"
    model = random_weights(teacher_py, "SmallNet", weights)
    spec = f"{teacher_py}:SmallNet"
    out, meta, stdout = distill(capsys, "--teacher", spec, "--teacher-weights", weights,
                                "--out", tmp_path / "run")
    # The config records the spec as given; meta["teacher"] its identity and hash.
    assert meta["config"]["kd"]["teacher"] == spec
    assert meta["config"]["kd"]["teacher_weights"] == str(weights)
    arch = f"py:SmallNet@sha256:{sha256(teacher_py)}"
    assert meta["teacher"]["arch"] == arch
    h = hashlib.sha256()  # the state dict (names, bytes), then the module's identity
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.contiguous().numpy().tobytes())
    h.update(f"|{arch}".encode())
    assert meta["teacher"]["weights_sha256"] == h.hexdigest()
    assert not (cache_dir() / "teachers").exists()  # frozen: nothing trained
    soft, images = cached_soft_targets(meta)
    with torch.no_grad():
        expected = model(as_float(images))
    assert soft.shape == (len(images), K)
    torch.testing.assert_close(soft, expected, rtol=0, atol=1e-6)
    assert not (teacher_py.parent / "__pycache__").exists()  # nothing written beside it
    # A second run hits the logits cache and trains the very same student.
    _, meta2, _ = distill(capsys, "--teacher", spec, "--teacher-weights", weights,
                          "--out", tmp_path / "run2")
    assert meta2["teacher"] == meta["teacher"] and meta2["metrics"] == meta["metrics"]
    assert len(list((cache_dir() / "teacher_logits").glob("*.safetensors"))) == 1


def test_py_teacher_weights_from_a_pt_state_dict_and_frozen(teacher_py, tmp_path):
    from qdistill.config import DistillConfig, load_config
    from qdistill.distillation.run import resolve_teacher
    from qdistill.training.tasks import build_task

    torch.manual_seed(2)
    model = PyTeacher(teacher_py, "SmallNet").build(K, SHAPE).eval()
    torch.save(model.state_dict(), tmp_path / "w.pt")
    cfg = load_config(DistillConfig, overrides=[
        "data.dataset=digits", "data.classes=0-3", "data.train_per_class=20",
        "data.test_per_class=10", "data.val_per_class=5", f"kd.teacher={teacher_py}:SmallNet",
        f"kd.teacher_weights={tmp_path / 'w.pt'}"])
    task = build_task(cfg.data, cfg.train.seed)
    teacher, meta = resolve_teacher(cfg, task)
    assert not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())
    x = as_float(task.train.images[:16])
    with torch.no_grad():
        torch.testing.assert_close(teacher(x), model(x), rtol=0, atol=0)


def test_py_teacher_without_weights_is_trained_once_and_cached(teacher_py, tmp_path,
                                                                capsys):
    spec = f"{teacher_py}:SmallNet"
    argv = ["--teacher", spec, "--teacher-epochs", "1"]
    _, meta, stdout = distill(capsys, *argv, "--out", tmp_path / "a")
    assert "teacher my_teacher.py:SmallNet epoch 1/1" in stdout and "cached" not in stdout
    dirs = sorted((cache_dir() / "teachers").iterdir())
    assert len(dirs) == 1 and dirs[0].name.startswith("py-SmallNet-digits-0-3-")
    teacher_meta = json.loads((dirs[0] / "best.json").read_text())
    arch = f"py:SmallNet@sha256:{sha256(teacher_py)}"
    assert teacher_meta["arch"] == arch == meta["teacher"]["arch"]
    assert meta["teacher"]["weights_sha256"] == teacher_meta["weights_sha256"]
    assert meta["teacher"]["epochs"] == 1
    # The soft targets are the trained module's logits.
    model = PyTeacher(teacher_py, "SmallNet").build(K, SHAPE)
    from safetensors.torch import load_file
    model.load_state_dict(load_file(str(dirs[0] / "best.safetensors")))
    soft, images = cached_soft_targets(meta)
    with torch.no_grad():
        torch.testing.assert_close(soft, model.eval()(as_float(images)), rtol=0, atol=1e-6)

    _, meta2, stdout = distill(capsys, *argv, "--out", tmp_path / "b")
    assert f"teacher my_teacher.py:SmallNet: cached in {dirs[0]}" in stdout
    assert "epoch 1/1: loss" not in stdout.split("student")[0]  # not trained again
    assert meta2["teacher"] == meta["teacher"]
    # Its checkpoint is not a built-in teacher's: named as such, not "unknown teacher".
    for bad in (["teacher", "eval", "--checkpoint", dirs[0]],
                [*STUDENT, "--teacher", dirs[0], "--out", tmp_path / "x"]):
        refused(capsys, bad, r"teacher py:SmallNet@sha256:\w+ is your own module: it is "
                r"rebuilt from its file, so use it as --teacher FILE\.py:NAME")

    # Moving the file keeps the teacher (content, not path); editing it trains another.
    moved = tmp_path / "elsewhere.py"
    moved.write_bytes(teacher_py.read_bytes())
    _, _, stdout = distill(capsys, "--teacher", f"{moved}:SmallNet", "--teacher-epochs",
                           "1", "--out", tmp_path / "c")
    assert "cached" in stdout
    teacher_py.write_text(TEACHER_PY + "\n# edited\n")
    _, meta3, stdout = distill(capsys, *argv, "--out", tmp_path / "d")
    assert "cached" not in stdout and len(list((cache_dir() / "teachers").iterdir())) == 2
    assert meta3["teacher"]["arch"] == f"py:SmallNet@sha256:{sha256(teacher_py)}" != arch


def test_factory_and_no_argument_class(teacher_py, tmp_path, capsys):
    _, meta, stdout = distill(capsys, "--teacher", f"{teacher_py}:make_teacher",
                              "--teacher-epochs", "1", "--out", tmp_path / "factory")
    assert meta["teacher"]["arch"].startswith("py:make_teacher@sha256:")
    assert "teacher my_teacher.py:make_teacher epoch 1/1" in stdout
    # The file runs as written: no __future__ flag of qdistill's leaks into it.
    assert PyTeacher(teacher_py, "make_teacher").obj.__annotations__ == {"num_classes": int}
    # A class whose constructor takes no arguments is called with none.
    weights = tmp_path / "fixed.safetensors"
    model = random_weights(teacher_py, "Fixed", weights)
    _, meta, _ = distill(capsys, "--teacher", f"{teacher_py}:Fixed", "--teacher-weights",
                         weights, "--out", tmp_path / "fixed")
    soft, images = cached_soft_targets(meta)
    with torch.no_grad():
        torch.testing.assert_close(soft, model(as_float(images)), rtol=0, atol=1e-6)


def test_teacher_run_directory_still_works(tmp_path, capsys):
    run = tmp_path / "teacher"
    assert main(["teacher", "train", "--arch", "mlp", "--dataset", "digits", "--classes",
                 "0-3", "--epochs", "1", "--device", "cpu", "--out", str(run)]) == 0
    _, meta, _ = distill(capsys, "--teacher", run, "--out", tmp_path / "run")
    assert meta["teacher"]["arch"] == "mlp"
    assert meta["teacher"]["weights_sha256"] == json.loads(
        (run / "best.json").read_text())["weights_sha256"]


# --- FILE.onnx ------------------------------------------------------------------------


class TinyCNN(nn.Module):
    def __init__(self, classes: int = K, hw: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.fc = nn.Linear(3 * hw * hw, classes)

    def forward(self, x):
        return self.fc(torch.tanh(self.conv(x)).flatten(1))


def export_onnx(model: nn.Module, path: Path, shape=SHAPE, dynamic: bool = True) -> Path:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    kwargs = dict(input_names=["images"], output_names=["logits"])
    if dynamic:
        kwargs["dynamic_axes"] = {"images": {0: "batch"}, "logits": {0: "batch"}}
    with warnings.catch_warnings():  # the legacy exporter's DeprecationWarning
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.zeros(1, *shape),), str(path), dynamo=False,
                          **kwargs)
    return path


@pytest.mark.parametrize("dynamic", [True, False], ids=["dynamic-batch", "fixed-batch-1"])
def test_onnx_teacher_gives_the_torch_models_logits(tmp_path, capsys, dynamic):
    torch.manual_seed(3)
    model = TinyCNN()
    path = export_onnx(model, tmp_path / "tiny.onnx", dynamic=dynamic)
    teacher = load_onnx_teacher(path, SHAPE, K)
    x = torch.rand(37, *SHAPE)
    got = teacher(x)
    assert got.dtype == torch.float32 and got.shape == (37, K) and not got.requires_grad
    with torch.no_grad():
        torch.testing.assert_close(got, model(x), rtol=0, atol=1e-5)

    out, meta, _ = distill(capsys, "--teacher", path, "--out", tmp_path / "run")
    assert meta["config"]["kd"]["teacher"] == str(path)
    assert meta["teacher"]["arch"] == "onnx:tiny.onnx"
    assert meta["teacher"]["weights_sha256"] == sha256(path)
    soft, images = cached_soft_targets(meta)
    with torch.no_grad():
        torch.testing.assert_close(soft, model(as_float(images)), rtol=0, atol=1e-5)
    assert not (cache_dir() / "teachers").exists()


# --- bad input ------------------------------------------------------------------------


class NotWeights:  # pickled by the .pt test: weights_only=True must refuse it
    pass


def _bad_py(tmp_path: Path, teacher_py: Path) -> list:
    """(argv, patterns) of bad FILE.py teachers."""
    src = str(teacher_py)
    wrong = tmp_path / "wrong.safetensors"
    torch.manual_seed(0)
    save_file({"fc.weight": torch.zeros(4, 64), "fc.bias": torch.zeros(4),
               "head.weight": torch.zeros(4, 4)}, str(wrong))
    shapes = tmp_path / "shapes.safetensors"
    save_file({"fc.weight": torch.zeros(4, 32), "fc.bias": torch.zeros(4)}, str(shapes))
    pickled = tmp_path / "model.pt"
    torch.save({"fc.weight": torch.zeros(4, 64), "extra": NotWeights()}, pickled)
    whole = tmp_path / "whole.pt"
    torch.save(nn.Linear(64, 4), whole)
    syntax = tmp_path / "broken.py"
    syntax.write_text("class Net(nn.Module:\n    pass\n")
    return [
        (["--teacher", f"{tmp_path}/missing.py:Net"],
         [r"teacher file \S+missing\.py does not exist"]),
        (["--teacher", f"{src}:Nope"],
         [r"teacher file \S+my_teacher\.py has no 'Nope'; it defines: SmallNet, Fixed, "
          r"Wide, make_teacher, needs_three"]),
        (["--teacher", src], [r"name the class or factory to use as FILE\.py:NAME "
                              r"\(my_teacher\.py defines: SmallNet, Fixed, Wide"]),
        (["--teacher", f"{src}:SIZE"],
         [r"my_teacher\.py:SIZE is of type int, not an nn\.Module subclass or a factory"]),
        (["--teacher", f"{src}:NotAModule"],
         [r"my_teacher\.py:NotAModule is a class but not an nn\.Module subclass"]),
        (["--teacher", f"{src}:needs_three"],
         [r"needs_three\(a, b, c\) cannot be called as needs_three\(num_classes, "
          r"image_shape\)"]),
        (["--teacher", f"{syntax}:Net"],
         [r"importing the teacher file \S+broken\.py failed: SyntaxError"]),
        (["--teacher", f"{src}:Wide", "--teacher-epochs", "1"],  # before any training
         [r"teacher my_teacher\.py:Wide must return logits of shape \(batch, 4\) for the "
          r"task's 4 classes; got \(2, 10\)"]),
        (["--teacher", f"{src}:Fixed", "--teacher-weights", wrong],
         [r"--teacher-weights \S+wrong\.safetensors do not fit my_teacher\.py:Fixed: "
          r"unexpected keys: head\.weight$"]),
        (["--teacher", f"{src}:SmallNet", "--teacher-weights", wrong],
         [r"missing keys: conv\.bias, conv\.weight; unexpected keys: head\.weight; shape "
          r"mismatches: fc\.weight \(4, 64\) \(model \(4, 256\)\)"]),
        (["--teacher", f"{src}:Fixed", "--teacher-weights", shapes],
         [r"shape mismatches: fc\.weight \(4, 32\) \(model \(4, 64\)\)"]),
        (["--teacher", f"{src}:Fixed", "--teacher-weights", pickled],
         [r"model\.pt is not a weights-only file \(it needs \S*NotWeights\): qdistill "
          r"reads \.pt files with torch\.load\(weights_only=True\) and never unpickles"]),
        (["--teacher", f"{src}:Fixed", "--teacher-weights", whole],
         [r"whole\.pt is not a weights-only file \(it needs torch\.nn\.modules\.linear"
          r"\.Linear\)"]),
        (["--teacher", f"{src}:Fixed", "--teacher-weights", tmp_path / "no.safetensors"],
         [r"--teacher-weights file \S+no\.safetensors does not exist"]),
        (["--teacher", f"{src}:Fixed", "--teacher-weights", teacher_py],
         [r"expected a \.safetensors file or a \.pt/\.pth state dict"]),
        (["--teacher", "mlp", "--teacher-weights", wrong],
         [r"--teacher-weights is for --teacher FILE\.py:NAME \(your own module\), not "
          r"--teacher mlp"]),
        (["--teacher", "none", "--teacher-weights", wrong],
         [r"--teacher-weights is for --teacher FILE\.py:NAME"]),
    ]


def test_bad_py_teachers_are_refused_before_anything_is_written(teacher_py, tmp_path,
                                                                 capsys):
    for i, (argv, patterns) in enumerate(_bad_py(tmp_path, teacher_py)):
        out = tmp_path / f"out{i}"
        refused(capsys, [*STUDENT, *argv, "--out", out], *patterns)
        assert nothing_written(out), argv


def test_bad_onnx_teachers_are_refused(tmp_path, capsys, monkeypatch):
    torch.manual_seed(0)
    big = export_onnx(TinyCNN(hw=28), tmp_path / "mnist.onnx", shape=(1, 28, 28))
    wide = export_onnx(TinyCNN(classes=10), tmp_path / "wide.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf")
    cases = [
        (big, [r"ONNX teacher \S+mnist\.onnx takes input 'images' of shape \(batch, 1, 28, "
               r"28\) but the task's images are \(batch, 1, 8, 8\)"]),
        (wide, [r"ONNX teacher \S+wide\.onnx returns 'logits' of shape \(batch, 10\) but "
                r"the task has 4 classes"]),
        (junk, [r"cannot load the ONNX teacher \S+junk\.onnx: "]),
        (tmp_path / "missing.onnx", [r"ONNX teacher \S+missing\.onnx does not exist"]),
    ]
    for i, (path, patterns) in enumerate(cases):
        out = tmp_path / f"out{i}"
        refused(capsys, [*STUDENT, "--teacher", path, "--out", out], *patterns)
        assert nothing_written(out)
    # Without onnxruntime: one line saying what to install.
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    out = tmp_path / "no-ort"
    refused(capsys, [*STUDENT, "--teacher", wide, "--out", out],
            r"ONNX teachers need onnxruntime; pip install 'qdistill\[onnx\]'$")
    assert nothing_written(out)


def test_teacher_help_lists_every_form(capsys):
    assert main(["distill", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for form in ("none", "lenet", "alexnet", "ensemble", "mlp", "teacher run directory",
                 "FILE.py:NAME", "FILE.onnx", "--teacher-weights",
                 "pip install 'qdistill[onnx]'"):
        assert form in text, form
