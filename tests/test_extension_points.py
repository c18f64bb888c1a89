"""Each extension point is one table: adding an entry (what a new file would hold) is
enough for the whole command line to use it. One test per table, as README's
"Contributing" section describes: a student kind, a KD loss, a dataset. (A noise
channel: tests/test_noise_channels.py registers two.)"""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from qdistill import losses, students
from qdistill.cli.parser import main
from qdistill.data import registry
from qdistill.data.core import LoadedArrays
from qdistill.losses import DistillationLoss
from qdistill.quantum import build_quantum_layer
from qdistill.students import Student, StudentKind

pytestmark = pytest.mark.usefixtures("isolated_data")  # see conftest.py

SMALL = ["--dataset", "digits", "--classes", "0-3", "--train-per-class", "20",
         "--test-per-class", "10", "--val-per-class", "5", "--epochs", "1", "--device", "cpu"]


# --- a student kind: students/<kind>.py + one STUDENTS entry -------------------------

class ToyStudent(Student):
    """Mean-pooled 2x2 image -> 4 angles -> RY + CNOT ring -> probabilities of 2 wires."""

    def __init__(self, num_classes: int, image_shape: tuple[int, int, int], layers: int):
        super().__init__()
        self.num_classes, self.image_shape = num_classes, tuple(image_shape)
        self.class_outputs = list(range(num_classes))
        self.circuit = build_quantum_layer(4, encoding="angle", ansatz="hardware_efficient",
                                           n_layers=layers, measurement="probs")
        self.circuit.measurement.wires = [0, 1]

    def circuit_input(self, x: torch.Tensor) -> torch.Tensor:
        return torch.pi * F.adaptive_avg_pool2d(x.mean(1, keepdim=True), 2).flatten(1)

    def logits_from_circuit(self, p: torch.Tensor) -> torch.Tensor:
        return torch.log(p[:, :self.num_classes] + 0.01)


def test_a_new_student_kind_is_one_table_entry(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(students.STUDENTS, "toy", StudentKind(
        lambda cfg, k, shape: ToyStudent(k, shape, cfg.layers), {"layers": 2}, True))
    run = tmp_path / "run"
    assert main(["distill", "--student", "toy", "--qubits", "4", *SMALL, "--teacher", "none",
                 "--out", str(run)]) == 0
    cfg = json.loads((run / "config.json").read_text())["config"]["student"]
    assert cfg["name"] == "toy" and cfg["layers"] == 2  # its own option, its own default
    assert main(["evaluate", "--run", str(run), "--shots", "100", "--out",
                 str(tmp_path / "r")]) == 0
    assert main(["export", "--run", str(run), "--test-index", "0", "--out",
                 str(tmp_path / "e")]) == 0
    doc = json.loads((tmp_path / "e" / "test-0.json").read_text())
    assert len(doc["ideal"]["probabilities"]) == 16 and len(doc["ideal"]["outputs"]) == 4
    capsys.readouterr()
    assert main(["distill", "--student", "toy", "--head", "paper", *SMALL]) == 2
    assert "does not apply to the toy student; it takes: --layers" in capsys.readouterr().err


# --- a KD loss: losses/<name>.py + one LOSSES entry ----------------------------------

class LogitMSE(DistillationLoss):
    """Logit matching (Ba & Caruana, "Do Deep Nets Really Need to be Deep?", 2014):
    ``L = (1 - alpha) CE(s, y) + alpha * mean((s - t)^2)``; T is not used."""

    def combine(self, outputs, s_cls, labels, teacher):
        return ((1 - self.alpha) * F.cross_entropy(outputs, labels)
                + self.alpha * ((s_cls - teacher) ** 2).mean())


def test_a_new_kd_loss_is_one_table_entry(monkeypatch, tmp_path):
    monkeypatch.setitem(losses.LOSSES, "logit-mse", LogitMSE)
    s, t, y = torch.randn(5, 4), torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 0])
    loss = losses.build_loss("logit-mse", alpha=0.25)
    expected = 0.75 * F.cross_entropy(s, y) + 0.25 * ((s - t) ** 2).mean()
    torch.testing.assert_close(loss(s, y, t), expected)
    run = tmp_path / "run"
    assert main(["distill", "--student", "paper-v2", "--qubits", "4", *SMALL,
                 "--teacher", "mlp", "--teacher-epochs", "1", "--loss", "logit-mse",
                 "--out", str(run)]) == 0
    assert json.loads((run / "config.json").read_text())["config"]["kd"]["variant"] == \
        "logit-mse"


# --- a dataset: data/<name>.py + one LOADERS entry ------------------------------------

def load_stripes(directory, origin, allow_download) -> LoadedArrays:
    """Horizontal (class 0) or vertical (class 1) stripes, 8x8, 40 + 20 images each."""
    rng = np.random.default_rng(0)

    def split(n):
        y = np.arange(2 * n) % 2
        x = np.zeros((2 * n, 1, 8, 8), np.uint8)
        x[y == 0, :, ::2, :] = 255
        x[y == 1, :, :, ::2] = 255
        noise = rng.integers(0, 60, x.shape, dtype=np.uint8)
        return np.where(x > 0, x - noise, noise).astype(np.uint8), y.astype(np.int64)

    (xtr, ytr), (xte, yte) = split(40), split(20)
    arrays = {"train_images": xtr, "train_labels": ytr, "test_images": xte, "test_labels": yte}
    return LoadedArrays("stripes", arrays, ["horizontal", "vertical"], "generated", {},
                        [{"source": "generated", "status": "used"}])


def test_a_new_dataset_is_one_table_entry(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(registry.LOADERS, "stripes", load_stripes)
    assert main(["data", "info", "stripes"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["class_names"] == ["horizontal", "vertical"]
    run = tmp_path / "run"
    assert main(["distill", "--student", "paper-v2", "--qubits", "2", "--dataset", "stripes",
                 "--classes", "0,1", "--train-per-class", "30", "--test-per-class", "20",
                 "--val-per-class", "5", "--epochs", "3", "--batch-size", "4", "--lr", "0.05",
                 "--teacher", "none", "--device", "cpu", "--out", str(run)]) == 0
    result = json.loads((run / "result.json").read_text())
    assert result["test_acc"] > 0.9  # stripes are easy: the data really arrived
