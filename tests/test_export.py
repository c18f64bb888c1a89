"""OpenQASM 3 export of trained students, checked on an independent simulator.

The reference below parses exactly the subset of OpenQASM 3 that the exporter emits
and applies textbook gate matrices to a dense complex128 statevector; it imports
nothing from ``qdistill.quantum``, so a wrong gate in an ``ops`` method and the same
mistake in qdistill's simulator cannot cancel out.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch

from qdistill.cli.parser import main
from qdistill.config import DataConfig, DistillConfig, from_dict, load_config
from qdistill.distillation.run import load_student, run_distill
from qdistill.errors import QdistillError
from qdistill.export.openqasm import export_student, student_circuit
from qdistill.quantum.gates import Op, apply_ops
from qdistill.quantum.measure import probabilities
from qdistill.quantum.noise import NoiseModel, noisy
from qdistill.quantum.qasm import to_qasm3
from qdistill.quantum.state import zero_state
from qdistill.training.evaluation import class_logits
from qdistill.training.tasks import build_task

ALLOWED = {"h", "x", "y", "z", "rx", "ry", "rz", "U", "cx", "cz", "crx", "cry", "crz", "swap"}

# ------------------------------------------------------------ NumPy reference ---

_S2 = 1 / math.sqrt(2)


def _rot(axis: str, t: float) -> np.ndarray:
    c, s = math.cos(t / 2), math.sin(t / 2)
    return {"x": np.array([[c, -1j * s], [-1j * s, c]]), "y": np.array([[c, -s], [s, c]]),
            "z": np.diag([np.exp(-0.5j * t), np.exp(0.5j * t)])}[axis]


def _u(t: float, p: float, lam: float) -> np.ndarray:  # OpenQASM 3 built-in U
    c, s = math.cos(t / 2), math.sin(t / 2)
    return np.array([[c, -np.exp(1j * lam) * s], [np.exp(1j * p) * s, np.exp(1j * (p + lam)) * c]])


def _ctrl(m: np.ndarray) -> np.ndarray:
    out = np.eye(4, dtype=complex)
    out[2:, 2:] = m
    return out


_X, _Y, _Z = np.array([[0, 1], [1, 0]]), np.array([[0, -1j], [1j, 0]]), np.diag([1, -1])
_FIXED = {"h": np.array([[_S2, _S2], [_S2, -_S2]]), "x": _X, "y": _Y, "z": _Z,
          "cx": _ctrl(_X), "cz": _ctrl(_Z), "swap": np.eye(4)[[0, 2, 1, 3]]}
_PARAM = {"rx": lambda t: _rot("x", t), "ry": lambda t: _rot("y", t),
          "rz": lambda t: _rot("z", t), "U": _u, "crx": lambda t: _ctrl(_rot("x", t)),
          "cry": lambda t: _ctrl(_rot("y", t)), "crz": lambda t: _ctrl(_rot("z", t))}
_GATE = re.compile(r"([A-Za-z]\w*)(?:\(([^()]*)\))? (q\[\d+\](?:, q\[\d+\])*);")


def parse_qasm(text: str) -> tuple[int, list[tuple[str, list[float], list[int]]], int | None]:
    """(n_qubits, [(gate, params, wires)], shots) of an exported program; strict."""
    lines = text.splitlines()
    assert lines[:2] == ["OPENQASM 3.0;", 'include "stdgates.inc";']
    n, shots, gates, measured = None, None, [], False
    for line in lines[2:]:
        if line.startswith("//"):
            if m := re.fullmatch(r"// shots: (\d+)", line):
                shots = int(m.group(1))
            continue
        assert not measured, f"statement after the final measurement: {line}"
        if m := re.fullmatch(r"qubit\[(\d+)\] q;", line):
            n = int(m.group(1))
        elif m := re.fullmatch(r"bit\[(\d+)\] c;", line):
            assert int(m.group(1)) == n
        elif line == "c = measure q;":
            measured = True
        else:
            m = _GATE.fullmatch(line)
            assert m, f"not in the exported subset: {line!r}"
            name, params, operands = m.groups()
            gates.append((name, [float(p) for p in params.split(", ")] if params else [],
                          [int(w) for w in re.findall(r"q\[(\d+)\]", operands)]))
    assert n is not None and measured
    return n, gates, shots


def reference_state(text: str) -> np.ndarray:
    """Statevector (2**n,) of the program, qubit 0 = most significant bit."""
    n, gates, _ = parse_qasm(text)
    psi = np.zeros((2,) * n, dtype=np.complex128)
    psi[(0,) * n] = 1
    for name, params, wires in gates:
        mat = _FIXED[name] if name in _FIXED else _PARAM[name](*params)
        assert len(set(wires)) == len(wires) and all(0 <= w < n for w in wires)
        k = len(wires)
        psi = np.tensordot(mat.reshape((2,) * 2 * k), psi, axes=(list(range(k, 2 * k)), wires))
        psi = np.moveaxis(psi, list(range(k)), wires)
    return psi.reshape(-1)


def logits_from_probs(probs: np.ndarray, doc: dict) -> np.ndarray:
    """Class logits from basis-state probabilities, following only the JSON's readout."""
    r, n = doc["readout"], doc["qasm"]["n_qubits"]
    wires = r["readout_qubits"]
    p = probs.reshape((2,) * n)
    p = p.sum(axis=tuple(w for w in range(n) if w not in wires))
    p = np.transpose(p, [sorted(wires).index(w) for w in wires]).reshape(-1)
    if r["kind"] == "basis_probabilities":
        pc = p[r["class_outputs"]]
        return np.log(pc + 0.01) if r["head"] == "logprob" else 1 / (1 + np.exp(-pc))
    k = len(wires)
    bits = (np.arange(2**k)[:, None] >> np.arange(k - 1, -1, -1)) & 1
    z = (p[:, None] * (1 - 2 * bits)).sum(0)
    if "linear" in r:
        return np.asarray(r["linear"]["weight"]) @ z + np.asarray(r["linear"]["bias"])
    return r["scale"] * z[r["class_outputs"]]


# ------------------------------------------------------------------- students ---

SMALL = ["data.train_per_class=6", "data.test_per_class=3", "data.val_per_class=2",
         "data.classes=0-3", "train.epochs=1", "train.device=cpu", "kd.teacher=none"]
STUDENTS = {
    "v1": [],
    "v1-paper-head-shots": ["student.head=paper", "student.qubits=2", "student.shots=50"],
    "v1-half-pi": ["student.angles=half-pi"],
    "v2-fc-amplitude": ["student.name=paper-v2", "student.qubits=4"],
    "v2-pca-angle": ["student.name=paper-v2", "student.qubits=4", "student.reduction=pca",
                     "student.encoding=angle"],
    "v2-avgpool-dense": ["student.name=paper-v2", "student.qubits=4",
                         "student.reduction=avgpool", "student.encoding=dense"],
    "q-avgpool-amplitude-hea": ["student.name=quantum", "student.qubits=4",
                                "student.reduction=avgpool", "student.layers=2"],
    "q-pca-dense-strong-z": ["student.name=quantum", "student.qubits=4",
                             "student.reduction=pca", "student.encoding=dense",
                             "student.ansatz=strong", "student.layers=2",
                             "student.readout=z"],
    "q-crop-amplitude-qcnn": ["student.name=quantum", "student.qubits=4",
                              "student.reduction=crop", "student.ansatz=qcnn"],
    "q-maxpool-angle-qcnn-z": ["student.name=quantum", "student.qubits=4",
                               "student.reduction=maxpool", "student.encoding=angle",
                               "student.ansatz=qcnn", "student.readout=z",
                               "data.classes=0-1"],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("export-runs")
    out = {}
    for name, overrides in STUDENTS.items():
        run_distill(load_config(DistillConfig, None, [*SMALL, *overrides]), root / name)
        out[name] = root / name
    return out


def _exact_student(run):
    student, meta = load_student(run)
    for m in student.modules():  # trained with shots: compare with exact values
        if hasattr(m, "shots"):
            m.shots = None
    return student, meta


def _test_image(meta, index):
    task = build_task(from_dict(DataConfig, meta["config"]["data"]),
                      meta["config"]["train"]["seed"])
    return task.test.images[index:index + 1].float() / 255.0, int(task.test.labels[index])


@pytest.mark.parametrize("name", list(STUDENTS))
def test_export_matches_student_on_independent_simulator(runs, name, tmp_path):
    paths = export_student(runs[name], 1, tmp_path, shots=1000)
    assert paths == {"qasm": tmp_path / "test-1.qasm", "json": tmp_path / "test-1.json"}
    text, doc = paths["qasm"].read_text(), json.loads(paths["json"].read_text())
    n, gates, shots = parse_qasm(text)
    assert shots == 1000 and doc["qasm"]["shots"] == 1000 and text.splitlines()[2] == \
        "// shots: 1000"
    assert {g for g, _, _ in gates} <= ALLOWED
    assert n == doc["qasm"]["n_qubits"] and len(gates) == doc["qasm"]["gates"]
    ref = np.abs(reference_state(text)) ** 2
    np.testing.assert_allclose(ref, doc["ideal"]["probabilities"], atol=1e-5, rtol=0)

    student, meta = _exact_student(runs[name])
    x, label = _test_image(meta, 1)
    with torch.no_grad():
        logits = class_logits(student, student(x))[0]
        if meta["student"]["name"] == "paper-v1":
            own = student.probabilities(x)[0]
            outputs = own
            theta = student.front(x)[0]
            np.testing.assert_allclose(doc["circuit_input"], theta.tolist(), rtol=0, atol=0)
        else:
            scale = student.input_scale
            features = scale * student.reduce(x)
            own = probabilities(student.quantum.state(features))[0]
            outputs = student.quantum(features)[0]
            np.testing.assert_allclose(doc["circuit_input"], features[0].tolist(), rtol=0,
                                       atol=0)
    # The JSON's numbers come from the gate list in complex128, the student's own from its
    # float32 forward: another code path, so a tolerance.
    np.testing.assert_allclose(doc["ideal"]["probabilities"], own.tolist(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(doc["ideal"]["outputs"], outputs.tolist(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(doc["ideal"]["logits"], logits.tolist(), rtol=0, atol=1e-5)
    assert doc["ideal"]["predicted_class"] == int(logits.argmax())
    # A noiseless student: its own forward is the ideal circuit, and there is no noisy block.
    assert doc["trained_and_evaluated_with"] == "ideal" and doc["noisy"] is None
    assert doc["format"] == "qdistill-export/2" and "logits" not in doc
    # The JSON alone turns the independent simulator's probabilities into the logits.
    np.testing.assert_allclose(logits_from_probs(ref, doc), logits.numpy(), atol=1e-4)
    assert doc["image"] == {"source": "test split", "test_index": 1, "label": label,
                            "original_label": meta["classes"][label],
                            "class_name": meta["task"]["class_names"][label]}
    assert doc["task"]["dataset"] == "mnist" and doc["qdistill_version"]
    assert "c[k] = qubit k" == doc["measurement"]["bits"]


# ---------------------------------------------------------- noise-trained students ---

NOISY_STUDENTS = {  # student.noise set: trained (and evaluated) with its circuit under noise
    "v1-noisy": ["student.noise=depolarizing=0.05,readout=0.05"],
    "v1-paper-head-shots-noisy": ["student.head=paper", "student.qubits=2", "student.shots=50",
                                  "student.noise=depolarizing=0.05,readout=0.05"],
    "v2-pca-angle-noisy": ["student.name=paper-v2", "student.qubits=4",
                           "student.reduction=pca", "student.encoding=angle",
                           "student.noise=depolarizing=0.02,depolarizing2=0.05,readout=0.03"],
    "q-avgpool-amplitude-z-damping": [
        "student.name=quantum", "student.qubits=4", "student.reduction=avgpool",
        "student.readout=z", "student.noise=depolarizing=0.01,damping=0.05,readout=0.02"],
    "q-crop-qcnn-trajectories": [
        "student.name=quantum", "student.qubits=4", "student.reduction=crop",
        "student.ansatz=qcnn", "student.noise=depolarizing=0.05,readout=0.05",
        "student.noise_method=trajectories", "student.noise_trajectories=8"],
}
_PENNYLANE = {"h": "Hadamard", "x": "PauliX", "y": "PauliY", "z": "PauliZ", "rx": "RX",
              "ry": "RY", "rz": "RZ", "U": "U3", "cx": "CNOT", "cz": "CZ", "crx": "CRX",
              "cry": "CRY", "crz": "CRZ", "swap": "SWAP"}


@pytest.fixture(scope="module")
def noisy_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("export-noisy-runs")
    for name, overrides in NOISY_STUDENTS.items():
        run_distill(load_config(DistillConfig, None, [*SMALL, *overrides]), root / name)
    return {name: root / name for name in NOISY_STUDENTS}


def _close(actual, expected, atol=1e-5):
    # The JSON's numbers come from the gate list in complex128 and the head in float32,
    # the student's from its float32 forward: agreement to float32 rounding (times the
    # z read-out's trained scale), not bit for bit.
    torch.testing.assert_close(torch.as_tensor(actual, dtype=torch.float64),
                               torch.as_tensor(expected, dtype=torch.float64), rtol=0, atol=atol)


def _check_prediction(block, logits):
    """predicted_class is the argmax of ``logits`` where the top two are not a near tie."""
    assert block["predicted_class"] == int(np.argmax(block["logits"]))
    logits = torch.as_tensor(logits, dtype=torch.float64).numpy()
    top = np.sort(logits)[::-1]
    if top[0] - top[1] > 1e-4:
        assert block["predicted_class"] == int(np.argmax(logits))


def pennylane_noisy_probs(text: str, noise: NoiseModel) -> np.ndarray:
    """The exported program under ``noise`` on PennyLane's ``default.mixed``: after
    every gate depolarizing then damping on its wires, every measured bit flipped with
    probability ``readout``; probabilities of all qubits (qubit 0 most significant)."""
    import pennylane as qml

    n, gates, _ = parse_qasm(text)
    paulis = [np.eye(2), _X, _Y, _Z]
    two = [np.kron(a, b) for a in paulis for b in paulis]

    @qml.qnode(qml.device("default.mixed", wires=n))
    def circuit():
        for name, params, wires in gates:
            getattr(qml, _PENNYLANE[name])(*params, wires=wires)
            if len(wires) == 1 and noise.depolarizing:
                qml.DepolarizingChannel(noise.depolarizing, wires=wires)
            if len(wires) == 2 and noise.depolarizing2:
                p = noise.depolarizing2
                qml.QubitChannel([math.sqrt(1 - p) * two[0]]
                                 + [math.sqrt(p / 15) * k for k in two[1:]], wires=wires)
            for w in wires if noise.damping else ():
                qml.AmplitudeDamping(noise.damping, wires=w)
        for w in range(n) if noise.readout else ():
            qml.BitFlip(noise.readout, wires=w)
        return qml.probs(wires=range(n))

    return np.asarray(circuit())


@pytest.mark.parametrize("name", list(NOISY_STUDENTS))
def test_noise_trained_export_keeps_ideal_and_noisy_apart(noisy_runs, name, tmp_path):
    # The .qasm is the ideal circuit; the JSON gives its numbers in "ideal" and the
    # student's own (noisy) numbers in "noisy", each block consistent in itself.
    run = noisy_runs[name]
    student, meta = _exact_student(run)  # the noise model comes back from the config
    layer = student.circuit if meta["student"]["name"] == "paper-v1" else student.quantum
    sim = layer.noise
    noise = NoiseModel.parse(meta["student"]["noise"])
    assert sim is not None and sim.noise == noise
    differ = 0.0
    for index in range(4):
        paths = export_student(run, index, tmp_path)
        text, doc = paths["qasm"].read_text(), json.loads(paths["json"].read_text())
        ideal, noisy_ = doc["ideal"], doc["noisy"]
        assert doc["trained_and_evaluated_with"] == "noisy"
        assert noise.spec() in doc["trained_and_evaluated_with_note"]
        assert noisy_["noise_model"] == noise.spec()
        assert noisy_["method"] == meta["student"]["noise_method"]
        assert set(ideal) <= set(noisy_) and not {"probabilities", "outputs", "logits",
                                                   "predicted_class"} & set(doc)

        # ideal: the exported gate list re-simulated independently gives its probabilities;
        # its logits are the head on them (from the JSON alone, and by the student's head).
        ref = np.abs(reference_state(text)) ** 2
        _close(ideal["probabilities"], ref)
        _close(ideal["logits"], logits_from_probs(np.asarray(ideal["probabilities"]), doc))
        with torch.no_grad():
            head = class_logits(student, student.logits_from_circuit(
                torch.tensor([ideal["outputs"]])))[0]
        _close(ideal["logits"], head)
        x, _ = _test_image(meta, index)
        with noisy(student, None), torch.no_grad():  # the student with its noise removed
            _close(ideal["logits"], class_logits(student, student(x))[0])
        _check_prediction(ideal, ideal["logits"])

        # noisy: the student's own forward (its noise model attached; trajectories rerun
        # from the recorded seed), and the head on the noisy probabilities.
        if noisy_["trajectory_seed"] is not None:
            assert noisy_["trajectories"] == meta["student"]["noise_trajectories"]
            sim.reseed(noisy_["trajectory_seed"])
        with torch.no_grad():
            own = class_logits(student, student(x))[0]
        _close(noisy_["logits"], own)
        _close(noisy_["logits"], logits_from_probs(np.asarray(noisy_["probabilities"]), doc))
        _check_prediction(noisy_, own)
        # qdistill's complex64 density matrices vs complex128: float32 rounding (the trace
        # drifts by ~5e-6 over a 4-qubit circuit with damping), hence 1e-5 here.
        _close(sum(noisy_["probabilities"]), 1.0, atol=1e-5)
        if index == 0 and sim.method == "density":  # the .qasm under the named noise model
            pytest.importorskip("pennylane")
            _close(noisy_["probabilities"], pennylane_noisy_probs(text, noise), atol=1e-5)
        differ = max(differ, float(np.abs(np.subtract(ideal["logits"],
                                                      noisy_["logits"])).max()))
    assert differ > 1e-3  # the two blocks really are different numbers


@pytest.mark.parametrize("name", list(STUDENTS))
def test_qiskit_reads_the_exported_program(runs, name, tmp_path):
    # Qiskit's own OpenQASM 3 reader (qiskit-qasm3-import, in the qiskit and test
    # extras) on the file as written: the JSON's probabilities come back.
    qasm3 = pytest.importorskip("qiskit.qasm3")
    pytest.importorskip("qiskit_qasm3_import")
    from qiskit.quantum_info import Statevector

    paths = export_student(runs[name], 0, tmp_path)
    doc = json.loads(paths["json"].read_text())
    qc = qasm3.loads(paths["qasm"].read_text())
    n = doc["qasm"]["n_qubits"]
    assert qc.num_qubits == n and qc.count_ops()["measure"] == n
    qc.remove_final_measurements()
    # Qiskit is little-endian: qargs reversed gives index j = sum b_k 2**(n-1-k).
    probs = Statevector(qc).probabilities(qargs=list(range(n))[::-1])
    np.testing.assert_allclose(probs, doc["ideal"]["probabilities"], atol=1e-5)


def pennylane_qasm3(text: str) -> str:
    """What PennyLane 0.45's ``qml.from_qasm3`` accepts of an exported program: it
    rejects the ``include "stdgates.inc";`` line and the built-in ``U`` gate (it knows
    ``u3``, which differs from ``U`` by a global phase only, so the measured
    probabilities are the same) and does not need the final measurement."""
    keep = [line for line in text.splitlines()
            if not line.startswith("include ") and "measure" not in line]
    return "\n".join(re.sub(r"^U\(", "u3(", line) for line in keep)


def test_pennylane_reads_the_exported_program_with_two_edits(runs, tmp_path):
    pytest.importorskip("openqasm3.parser")  # comes with qiskit-qasm3-import
    import pennylane as qml

    for name in ("v2-fc-amplitude", "q-pca-dense-strong-z"):
        paths = export_student(runs[name], 0, tmp_path)
        doc = json.loads(paths["json"].read_text())
        text = pennylane_qasm3(paths["qasm"].read_text())
        wires = [f"q[{k}]" for k in range(doc["qasm"]["n_qubits"])]

        @qml.qnode(qml.device("default.qubit", wires=wires))
        def circuit(text=text, wires=wires):
            qml.from_qasm3(text)()
            return qml.probs(wires=wires)

        np.testing.assert_allclose(circuit(), doc["ideal"]["probabilities"], atol=1e-5)


def test_half_pi_run_loads_and_exports_as_trained(runs, tmp_path):
    # The angle range travels in the run's config: reloading gives the half-pi front
    # end (pi/2 tanh), and the export says so.
    student, meta = load_student(runs["v1-half-pi"])
    assert meta["student"]["angles"] == "half-pi" and student.front.angles == "half-pi"
    doc = json.loads(export_student(runs["v1-half-pi"], 0, tmp_path)["json"].read_text())
    assert "theta = pi/2 * tanh(.)" in doc["preprocessing"]["description"]
    assert max(abs(t) for t in doc["circuit_input"]) < math.pi / 2
    plain = json.loads(export_student(runs["v1"], 0, tmp_path / "plain")["json"].read_text())
    assert "theta = pi * tanh(.)" in plain["preprocessing"]["description"]


def test_reference_gates_are_pennylanes_and_qdistills():
    """Every emitted gate (``U`` included) means the same to the reference, to PennyLane
    and to qdistill's simulator (amplitudes, so phases count too)."""
    import pennylane as qml

    rng = np.random.default_rng(0)
    a = [float(v) for v in rng.uniform(-math.pi, math.pi, 12)]
    ops = [Op("h", (0,)), Op("rx", (1,), a[0]), Op("ry", (2,), a[1]), Op("u", (0,), tuple(a[2:5])),
           Op("cx", (0, 2)), Op("crx", (2, 1), a[5]), Op("y", (1,)), Op("cry", (1, 0), a[6]),
           Op("rz", (0,), a[7]), Op("crz", (0, 1), a[8]), Op("x", (2,)), Op("cz", (1, 2)),
           Op("z", (0,)), Op("swap", (0, 2)), Op("ry", (1,), a[9])]
    text = to_qasm3(ops, 3)
    assert "U(" in text and "u(" not in text
    ref = reference_state(text)
    mine = apply_ops(zero_state(3, 1, dtype=torch.complex128), ops).reshape(-1).numpy()
    np.testing.assert_allclose(ref, mine, atol=1e-12)
    pl = {"h": qml.Hadamard, "x": qml.PauliX, "y": qml.PauliY, "z": qml.PauliZ, "rx": qml.RX,
          "ry": qml.RY, "rz": qml.RZ, "U": qml.U3, "cx": qml.CNOT, "cz": qml.CZ,
          "crx": qml.CRX, "cry": qml.CRY, "crz": qml.CRZ, "swap": qml.SWAP}

    @qml.qnode(qml.device("default.qubit", wires=3))
    def circuit():
        for name, params, wires in parse_qasm(text)[1]:
            pl[name](*params, wires=wires)
        return qml.state()

    np.testing.assert_allclose(ref, circuit(), atol=1e-12)


def test_qasm_writer_refuses_what_it_cannot_write():
    with pytest.raises(ValueError, match="non-finite"):
        to_qasm3([Op("ry", (0,), float("nan"))], 1)
    with pytest.raises(ValueError, match="no OpenQASM 3"):
        to_qasm3([Op("rot", (0,), (1.0, 2.0, 3.0))], 1)
    with pytest.raises(ValueError, match="wire"):
        to_qasm3([Op("cx", (0, 2))], 2)
    assert to_qasm3([Op("ry", (0,), 0.1)], 1).splitlines()[4] == "ry(0.1) q[0];"


def test_a_module_that_is_not_a_student_is_named():
    with pytest.raises(QdistillError, match="cannot export a Linear: not a qdistill student"):
        student_circuit(torch.nn.Linear(2, 2), torch.zeros(1, 2))


def test_cli_export_test_index_and_npy(runs, tmp_path, capsys):
    run = runs["v2-pca-angle"]
    assert main(["export", "--run", str(run), "--test-index", "0"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(run / "export" / "test-0.qasm"), str(run / "export" / "test-0.json")]
    by_index = json.loads((run / "export" / "test-0.json").read_text())
    assert "// shots" not in (run / "export" / "test-0.qasm").read_text()

    _, meta = load_student(run)
    x, _ = _test_image(meta, 0)
    pixels = (x[0] * 255).round().to(torch.uint8).numpy()
    np.save(tmp_path / "digit.npy", pixels)
    np.save(tmp_path / "flat.npy", pixels[0].astype(np.float64) / 255)  # (H, W) float
    for stem in ("digit", "flat"):
        assert main(["export", "--run", str(run), "--image", str(tmp_path / f"{stem}.npy"),
                     "--shots", "7", "--out", str(tmp_path / "out")]) == 0
        doc = json.loads((tmp_path / "out" / f"{stem}.json").read_text())
        assert doc["image"]["source"] == "file" and doc["qasm"]["shots"] == 7
        np.testing.assert_allclose(doc["ideal"]["probabilities"],
                                   by_index["ideal"]["probabilities"], atol=1e-6)
    assert capsys.readouterr().out.split()[-1] == str(tmp_path / "out" / "flat.json")


def test_errors_are_one_line(runs, tmp_path, capsys):
    run = runs["v1"]
    assert main(["teacher", "train", "--arch", "mlp", "--dataset", "digits", "--epochs", "1",
                 "--out", str(tmp_path / "teacher")]) == 0
    np.save(tmp_path / "wrong.npy", np.zeros((1, 8, 8), dtype=np.uint8))
    np.save(tmp_path / "ints.npy", np.zeros((1, 28, 28), dtype=np.int64))
    capsys.readouterr()
    cases = [
        (tmp_path / "nowhere", 0, "does not exist"),
        (tmp_path / "teacher", 0, "not a student checkpoint"),
        (run, tmp_path / "wrong.npy", r"shape \(1, 8, 8\); this student takes \(1, 28, 28\)"),
        (run, tmp_path / "ints.npy", "neither uint8"),
        (run, tmp_path / "missing.npy", "does not exist"),
        (run, 12, r"test index 12 is out of range: .* 12 images \(0\.\.11\)"),
        (run, -1, "out of range|--test-index: must be >= 0"),
    ]
    for run_dir, image, message in cases:
        with pytest.raises(QdistillError, match=message):
            export_student(run_dir, image, tmp_path / "x")
        which = ["--test-index", str(image)] if isinstance(image, int) else ["--image",
                                                                            str(image)]
        assert main(["export", "--run", str(run_dir), *which]) == 2
        err = capsys.readouterr().err
        assert err.startswith("qdistill: error: ") and err.count("\n") == 1
        assert re.search(message, err)
    with pytest.raises(QdistillError, match="shots must be a positive integer"):
        export_student(run, 0, tmp_path / "x", shots=0)
    assert not (tmp_path / "x").exists()
