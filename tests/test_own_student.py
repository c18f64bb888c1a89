"""Your own student from a .py file, end to end through the real command line:
``distill --student FILE.py:NAME`` -> ``evaluate --shots --noise`` -> ``export``, whose
OpenQASM 3 is re-simulated by the independent reference in test_export.py."""

import csv
import json
import textwrap

import numpy as np
import pytest
import torch
from test_bad_input import refused
from test_export import reference_state

from qdistill.cli.parser import main
from qdistill.distillation.run import load_student

pytestmark = pytest.mark.usefixtures("isolated_data")  # see conftest.py

def _docstring_example() -> str:
    """The example student of students/user.py's docstring, as written there."""
    from qdistill.students import user
    lines = user.__doc__.split("measurement) and it goes through everything a built-in "
                               "student does::")[1].split("Then ``qdistill distill")[0]
    return textwrap.dedent(lines)


# The documented example itself, plus two files that break the contract.
STUDENT_PY = _docstring_example() + '''


class NotAStudent(nn.Module):
    def __init__(self, num_classes, image_shape):
        super().__init__()
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        return self.fc(x.flatten(1))


def wrong_classes(num_classes, image_shape):
    s = MyStudent(num_classes, image_shape)
    s.class_outputs = [0, 1]
    return s
'''

DATA = ["--dataset", "digits", "--classes", "0-3", "--train-per-class", "20",
        "--test-per-class", "10", "--val-per-class", "5", "--device", "cpu"]


@pytest.fixture(scope="module")
def own_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("own-student")
    src = root / "my_student.py"
    src.write_text(STUDENT_PY)
    run = root / "run"
    argv = ["distill", "--student", f"{src}:MyStudent", *DATA, "--epochs", "2",
            "--batch-size", "8", "--lr", "0.02", "--teacher", "mlp", "--teacher-epochs", "1",
            "--out", str(run)]
    assert main(argv) == 0
    return {"src": src, "run": run}


def test_distill_records_what_ran(own_run):
    cfg = json.loads((own_run["run"] / "config.json").read_text())["config"]
    assert cfg["student"]["name"] == f"{own_run['src'].resolve()}:MyStudent"
    assert cfg["student"]["qubits"] == 4  # the circuit's, not the option's default of 3
    assert cfg["student"]["head"] is None and cfg["kd"]["teacher"] == "mlp"
    best = json.loads((own_run["run"] / "best.json").read_text())
    assert best["student_identity"].startswith("py:MyStudent@sha256:")
    assert best["parameters"]["quantum"] == 16  # 2 layers x 4 wires x (RY, RZ)
    student, _ = load_student(own_run["run"])
    assert type(student).__name__ == "MyStudent" and not student.training


def test_evaluate_under_shots_and_noise(own_run, tmp_path, capsys):
    out = tmp_path / "robust"
    assert main(["evaluate", "--run", str(own_run["run"]), "--shots", "1000",
                 "--noise", "depolarizing=0.01", "--seeds", "2", "--out", str(out)]) == 0
    with open(out / "robustness.csv") as f:
        rows = list(csv.DictReader(f))
    settings = {r["setting_label"] for r in rows}
    assert {"exact", "shots=1000", "depolarizing=0.01"} <= settings
    assert "depolarizing=0.01 + shots=1000" in settings
    assert all(0.0 <= float(r["test_acc"]) <= 1.0 for r in rows)


def test_export_is_the_circuit_the_student_runs(own_run, tmp_path):
    assert main(["export", "--run", str(own_run["run"]), "--test-index", "3",
                 "--out", str(tmp_path)]) == 0
    text = (tmp_path / "test-3.qasm").read_text()
    doc = json.loads((tmp_path / "test-3.json").read_text())
    ref = np.abs(reference_state(text)) ** 2  # the independent simulator in test_export.py
    np.testing.assert_allclose(doc["ideal"]["probabilities"], ref, atol=1e-6, rtol=0)
    student, meta = load_student(own_run["run"])
    from qdistill.training.tasks import task_of_run
    x = task_of_run(meta).test.float_images()[3:4]
    with torch.no_grad():
        logits = student(x)[0]
    np.testing.assert_allclose(doc["ideal"]["logits"], logits.tolist(), atol=1e-5, rtol=0)
    assert doc["readout"]["kind"] == "ExpvalZ" and doc["qasm"]["n_qubits"] == 4


def test_an_edited_student_file_is_refused(own_run, tmp_path, capsys):
    src = tmp_path / "copy.py"
    src.write_text(STUDENT_PY)
    run = tmp_path / "run"
    assert main(["distill", "--student", f"{src}:MyStudent", *DATA, "--epochs", "1",
                 "--teacher", "none", "--out", str(run)]) == 0
    src.write_text(STUDENT_PY + "\n# edited\n")
    refused(capsys, ["evaluate", "--run", run, "--out", tmp_path / "r"],
            "the student file .*copy.py has changed since this run was trained")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("name,extra,message", [
    ("NotAStudent", [], "NotAStudent is not a qdistill student: subclass "
                        r"qdistill\.students\.Student"),
    ("wrong_classes", [], "declares 2 class outputs; the task has 4 classes"),
    ("Missing", [], "student file .*my_student.py has no 'Missing'; it defines: MyStudent"),
    ("MyStudent", ["--head", "paper"],
     r"--head \(student\.head='paper'\) does not apply to the .*MyStudent student; it "
     "takes: no student options"),
])
def test_bad_student_files_are_refused(own_run, tmp_path, capsys, name, extra, message):
    out = tmp_path / "run"
    refused(capsys, ["distill", "--student", f"{own_run['src']}:{name}", *DATA,
                     "--teacher", "none", *extra, "--out", out], message)
    assert not out.exists()


def test_a_pennylane_torchlayer_circuit_trains_and_evaluates(tmp_path, capsys):
    pytest.importorskip("pennylane")
    src = tmp_path / "pl_student.py"
    src.write_text(textwrap.dedent('''
        import pennylane as qml
        from torch import nn

        from qdistill.students import Student

        dev = qml.device("default.qubit", wires=2)

        @qml.qnode(dev, interface="torch")
        def qnode(inputs, weights):
            qml.AngleEmbedding(inputs, wires=range(2))
            qml.BasicEntanglerLayers(weights, wires=range(2))
            return [qml.expval(qml.PauliZ(w)) for w in range(2)]

        class PLStudent(Student):
            def __init__(self, num_classes, image_shape):
                super().__init__()
                self.num_classes, self.class_outputs = num_classes, list(range(num_classes))
                self.image_shape = tuple(image_shape)
                self.reduce = nn.Linear(64, 2)
                self.circuit = qml.qnn.TorchLayer(qnode, {"weights": (2, 2)})
                self.head = nn.Linear(2, num_classes)

            def circuit_input(self, x):
                return self.reduce(x.flatten(1))

            def logits_from_circuit(self, z):
                return self.head(z.float())
    '''))
    run = tmp_path / "run"
    assert main(["distill", "--student", f"{src}:PLStudent", "--dataset", "digits",
                 "--classes", "0,1", "--train-per-class", "10", "--test-per-class", "5",
                 "--val-per-class", "2", "--epochs", "1", "--batch-size", "10",
                 "--teacher", "none", "--device", "cpu", "--out", str(run)]) == 0
    assert main(["evaluate", "--run", str(run), "--out", str(tmp_path / "r")]) == 0
    capsys.readouterr()
    refused(capsys, ["export", "--run", run, "--test-index", "0", "--out", tmp_path / "e"],
            "its circuit \\(TorchLayer\\) does not list its gates")
