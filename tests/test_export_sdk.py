"""Students converted to Qiskit circuits and PennyLane QNodes, run on those SDKs' own
simulators, against qdistill's simulator.

Exact: Qiskit's ``Statevector`` and PennyLane's ``default.qubit`` give qdistill's
probabilities (1e-5) and the same logits and predictions. With shots (Qiskit's seeded
``StatevectorSampler``, seeded ``default.qubit``): every sampled probability is within
5 binomial standard deviations plus one count of the exact value,
``|f - p| <= 5 sqrt(p (1 - p) / S) + 1 / S``, and every image whose exact prediction
cannot flip under that bound is predicted the same. Real MNIST images (offline).
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("qiskit")
pennylane = pytest.importorskip("pennylane")

from qiskit.primitives import StatevectorSampler  # noqa: E402
from qiskit.quantum_info import Statevector  # noqa: E402

from qdistill.config import StudentConfig  # noqa: E402
from qdistill.data import make_task  # noqa: E402
from qdistill.errors import QdistillError  # noqa: E402
from qdistill.export.sdk import (  # noqa: E402
    CircuitBatch,
    _gate,
    _qiskit_circuit,
    _qnode,
    circuit_batch,
    predict_with,
    probabilities_from_counts,
    qiskit_circuits,
    to_pennylane,
    to_qiskit,
)
from qdistill.quantum.gates import Op, apply_ops  # noqa: E402
from qdistill.quantum.layer import build_quantum_layer  # noqa: E402
from qdistill.quantum.measure import probabilities  # noqa: E402
from qdistill.quantum.state import zero_state  # noqa: E402
from qdistill.students import PaperV1Student, build_student  # noqa: E402
from qdistill.training.evaluation import class_logits  # noqa: E402

SHOTS = 10_000
STUDENTS = {
    "v1": StudentConfig(name="paper-v1", qubits=3),
    "v1-paper-head": StudentConfig(name="paper-v1", qubits=2, head="paper"),
    "v2-fc-amplitude": StudentConfig(name="paper-v2", qubits=4),
    "v2-pca-angle": StudentConfig(name="paper-v2", qubits=4, reduction="pca",
                                  encoding="angle"),
    "v2-avgpool-dense": StudentConfig(name="paper-v2", qubits=3, reduction="avgpool",
                                      encoding="dense"),
    "q-avgpool-amplitude-hea": StudentConfig(name="quantum", qubits=4, layers=2),
    "q-pca-dense-strong-z": StudentConfig(name="quantum", qubits=4, reduction="pca",
                                          encoding="dense", ansatz="strong", layers=2,
                                          readout="z"),
    "q-crop-amplitude-qcnn": StudentConfig(name="quantum", qubits=4, reduction="crop",
                                           ansatz="qcnn"),  # reads wires [0, 2]
}


@pytest.fixture(scope="module")
def task():
    return make_task("mnist", "0-3", train_per_class=8, test_per_class=3)


def _student(name: str, task, trained: bool) -> torch.nn.Module:
    """Random weights (circuit angles uniform in [-pi, pi]), or those after 20 Adam
    steps of cross-entropy on the training images ("trained-looking")."""
    torch.manual_seed(0)
    student = build_student(STUDENTS[name], 4, (1, 28, 28))
    x, y = task.train.float_images(), task.train.labels.long()
    if hasattr(student, "fit_preprocessing"):
        student.fit_preprocessing(x)
    with torch.no_grad():
        for p in student.quantum.parameters() if hasattr(student, "quantum") else []:
            p.uniform_(-math.pi, math.pi)
    if trained:  # Adam written out: torch.optim's first use imports torch._dynamo (~5 s)
        params = [(p, 0.1 if n.startswith("quantum.") else 0.01, torch.zeros_like(p),
                   torch.zeros_like(p)) for n, p in student.named_parameters()]
        for step in range(1, 21):
            student.zero_grad()
            torch.nn.functional.cross_entropy(student(x), y).backward()
            with torch.no_grad():
                for p, lr, m, v in params:
                    m.mul_(0.9).add_(p.grad, alpha=0.1)
                    v.mul_(0.999).addcmul_(p.grad, p.grad, value=0.001)
                    p -= lr * (m / (1 - 0.9**step)) / ((v / (1 - 0.999**step)).sqrt() + 1e-8)
    return student.eval()


def _own(student, images):
    """qdistill's probabilities of the readout wires and class logits."""
    x = images.float() / 255
    with torch.no_grad():
        features = student.circuit_input(x)
        if isinstance(student, PaperV1Student):
            probs = student.circuit(features)
        else:
            layer = student.quantum
            probs = probabilities(layer.state(features), layer.measurement.wires)
        return probs.double(), class_logits(student, student(x))


def _decided(logits: torch.Tensor, tol: float) -> torch.Tensor:
    """Images whose top logit leads the runner-up by more than ``tol``."""
    top2 = logits.topk(2, dim=1).values
    return (top2[:, 0] - top2[:, 1]) > tol


def _robust(student, probs: torch.Tensor, logits: torch.Tensor, shots: int) -> torch.Tensor:
    """Images whose prediction cannot change when every sampled probability of the
    readout wires is off by at most the 5-sigma bound (exact for these heads)."""
    def bound(p: torch.Tensor) -> torch.Tensor:
        return 5 * torch.sqrt(p * (1 - p) / shots) + 1 / shots

    k = logits.shape[1]
    if isinstance(student, PaperV1Student) or getattr(student, "readout", "") == "probs":
        # Logits increase with p_j (log(p + 0.01) or sigmoid): compare the intervals.
        p = probs[:, :k]
        top = p.argmax(1, keepdim=True)
        low = (p - bound(p)).gather(1, top)[:, 0]
        high = (p + bound(p)).scatter(1, top, -1.0).amax(1)
        return low > high
    # <Z_w> = 1 - 2 P(bit w = 1), one binomial per wire; logits linear in <Z>.
    n = int(round(math.log2(probs.shape[1])))
    bits = (torch.arange(2**n)[:, None] >> torch.arange(n - 1, -1, -1)) & 1
    dz = 2 * bound(probs @ bits.double())
    weight = (student.head.weight if hasattr(student, "head") else
              student.scale * torch.eye(n)[:k]).detach().abs().double()
    dl = dz @ weight.T  # bound on each logit's error
    top = logits.argmax(1, keepdim=True)
    margin = logits.double().gather(1, top) - logits.double()
    return ((margin > dl.gather(1, top) + dl) | (margin == 0)).all(1)


@pytest.mark.parametrize("trained", [False, True], ids=["random", "trained"])
@pytest.mark.parametrize("name", list(STUDENTS))
def test_sdks_match_qdistill(task, name, trained):
    student = _student(name, task, trained)
    images, labels = task.test.images, task.test.labels
    probs, logits = _own(student, images)
    decided = _decided(logits, 1e-4)
    assert decided.float().mean() > 0.5, "too many ties to compare predictions"

    # Qiskit by hand: the circuit of one image on Statevector, in qdistill's order.
    qc = to_qiskit(student, images[3], measure=False)
    wires = qc.metadata["readout_wires"]
    sv = Statevector(qc).probabilities(qargs=wires[::-1])
    np.testing.assert_allclose(sv, probs[3], atol=1e-5, rtol=0)
    # PennyLane by hand: one broadcast QNode for the batch.
    np.testing.assert_allclose(to_pennylane(student, images)(), probs, atol=1e-5, rtol=0)

    for backend in ("qiskit", "pennylane"):
        exact = predict_with(student, images, backend=backend)
        np.testing.assert_allclose(exact.probabilities, probs, atol=1e-5, rtol=0)
        np.testing.assert_allclose(exact.logits, logits, atol=1e-4, rtol=0)
        assert torch.equal(exact.predictions[decided], logits.argmax(1)[decided])

        sampled = predict_with(student, images, backend=backend, shots=SHOTS, seed=7)
        f = sampled.probabilities.double()
        counts = f * SHOTS  # frequencies of SHOTS draws
        assert (counts - counts.round()).abs().max() < 1e-6
        bound = 5 * torch.sqrt(probs * (1 - probs) / SHOTS) + 1 / SHOTS
        assert ((f - probs).abs() <= bound).all(), (f - probs).abs().max()
        robust = _robust(student, probs, logits, SHOTS)
        assert robust.any() or not trained
        assert torch.equal(sampled.predictions[robust], logits.argmax(1)[robust])
        if trained:
            acc_shots = (sampled.predictions == labels).float().mean()
            acc_exact = (logits.argmax(1) == labels).float().mean()
            assert abs(acc_shots - acc_exact) <= (~robust).float().mean() + 1e-6


def test_every_gate_means_the_same_in_qiskit_pennylane_and_qdistill():
    """The whole exportable gate set (``u`` included), amplitudes and phases."""
    import qiskit

    rng = np.random.default_rng(0)
    a = [float(v) for v in rng.uniform(-math.pi, math.pi, 12)]
    ops = [Op("h", (0,)), Op("rx", (1,), a[0]), Op("ry", (2,), a[1]), Op("u", (0,), tuple(a[2:5])),
           Op("cx", (0, 2)), Op("crx", (2, 1), a[5]), Op("y", (1,)), Op("cry", (1, 0), a[6]),
           Op("rz", (0,), a[7]), Op("crz", (0, 1), a[8]), Op("x", (2,)), Op("cz", (1, 2)),
           Op("z", (0,)), Op("swap", (0, 2)), Op("ry", (1,), a[9]), Op("cnot", (2, 0))]
    own = apply_ops(zero_state(3, 1, dtype=torch.complex128), ops).reshape(-1).numpy()
    batch = CircuitBatch([[_gate(op, 3) for op in ops]], 3, [2, 0], "probs")
    qc = _qiskit_circuit(qiskit, batch.gates[0], batch, measure=False)
    np.testing.assert_allclose(Statevector(qc).reverse_qargs().data, own, atol=1e-12)
    p = (np.abs(own) ** 2).reshape(2, 2, 2).sum(1).T.reshape(-1)  # wires [2, 0], 2 first
    np.testing.assert_allclose(_qnode(pennylane, batch, None, None)(), p, atol=1e-12)
    with pytest.raises(QdistillError, match="no OpenQASM 3 standard-library form"):
        _gate(Op("rot", (0,), (1.0, 2.0, 3.0)), 1)
    with pytest.raises(QdistillError, match="needs 2 wire"):
        _gate(Op("cx", (0, 2)), 2)


def test_qubit_order_statevector_and_counts():
    """Amplitudes, phases included, and the bit order of counts."""
    layer = build_quantum_layer(3, encoding="dense", ansatz="strongly_entangling",
                                n_layers=2, measurement="probs", dtype=torch.complex128)
    x = torch.tensor([[0.3, -1.2, 2.0, 0.7, -0.4, 1.1]], dtype=torch.float64)
    with torch.no_grad():
        own = layer.state(x).reshape(-1).numpy()
    qc = to_qiskit(layer, x[0], measure=False)
    # Qiskit reads qubit 0 as the least significant bit: reverse to compare.
    np.testing.assert_allclose(Statevector(qc).reverse_qargs().data, own, atol=1e-12)

    one = build_quantum_layer(2, encoding="angle", ansatz="none", measurement="probs")
    qc = to_qiskit(one, torch.tensor([math.pi, 0.0]))  # RX(pi) on wire 0: |10>, j = 2
    counts = StatevectorSampler(seed=0).run([qc], shots=10).result()[0].data.c.get_counts()
    assert counts == {"01": 10}  # c[1] c[0]: clbit 0 (wire 0) printed last
    np.testing.assert_array_equal(probabilities_from_counts(counts, 2), [0, 0, 1, 0])
    np.testing.assert_allclose(to_pennylane(one, torch.tensor([math.pi, 0.0]))(),
                               [0, 0, 1, 0], atol=1e-12)


def test_seeded_shots_repeat_and_counts_agree(task):
    student = _student("q-crop-amplitude-qcnn", task, trained=False)
    images = task.test.images[:4]
    for backend in ("qiskit", "pennylane"):
        first = predict_with(student, images, backend=backend, shots=500, seed=3)
        again = predict_with(student, images, backend=backend, shots=500, seed=3)
        other = predict_with(student, images, backend=backend, shots=500, seed=4)
        assert torch.equal(first.probabilities, again.probabilities)
        assert not torch.equal(first.probabilities, other.probabilities)
    # predict_with reads the sampler's bits as probabilities_from_counts reads counts
    result = StatevectorSampler(seed=3).run(qiskit_circuits(student, images),
                                            shots=500).result()
    from_counts = [probabilities_from_counts(r.data.c.get_counts(), 2) for r in result]
    mine = predict_with(student, images, backend="qiskit", shots=500, seed=3)
    np.testing.assert_array_equal(mine.probabilities.numpy(), np.stack(from_counts))


def test_batch_helpers_and_gate_names(task):
    student = _student("q-crop-amplitude-qcnn", task, trained=False)
    circuits = qiskit_circuits(student, task.test.images[:4])
    assert len(circuits) == 4 and all(c.num_clbits == 2 for c in circuits)
    assert circuits[0].metadata["readout_wires"] == [0, 2]
    names = {inst.operation.name for c in circuits for inst in c.data}
    assert names <= {"ry", "cx", "rx", "crz", "crx", "x", "measure"}
    batch = circuit_batch(student, task.test.images[:4])
    assert len(batch.gates) == 4 and batch.readout == "probs" and batch.n_qubits == 4
    single = to_qiskit(student, task.test.images[0, 0].numpy())  # (H, W) uint8
    assert single == circuits[0]
    # float images in [0, 1] give the same circuit as uint8
    assert to_qiskit(student, task.test.images[0].float() / 255) == circuits[0]
    # a v1 student's V1Circuit on its own takes the angles
    v1 = _student("v1", task, trained=False)
    theta = torch.tensor([0.1, -2.0, 3.0])
    with torch.no_grad():
        own = v1.circuit(theta[None])[0]
    np.testing.assert_allclose(to_pennylane(v1.circuit, theta)(), own, atol=1e-6)


def test_errors(task, monkeypatch):
    student = _student("v2-pca-angle", task, trained=False)
    images = task.test.images
    cases = [
        (lambda: to_qiskit(student, images[:2]), "one circuit for one input, got a batch of 2"),
        (lambda: to_qiskit(student, np.zeros((1, 8, 8), np.uint8)),
         r"shape \(1, 8, 8\); this student takes an image of shape \(1, 28, 28\) or "
         r"\(28, 28\)"),
        (lambda: to_pennylane(student, images[:0]), r"shape \(0, 1, 28, 28\)"),
        (lambda: to_qiskit(student, np.zeros((1, 28, 28), np.int64)), "neither uint8"),
        (lambda: predict_with(student, images, backend="cirq"), "unknown backend 'cirq'"),
        (lambda: predict_with(student, images, shots=0), "shots must be None"),
        (lambda: predict_with(student.quantum, images), "predict_with takes a student"),
        (lambda: to_qiskit(torch.nn.Linear(2, 2), images[0]), "cannot convert a Linear"),
        (lambda: to_qiskit(student.quantum, torch.zeros(9)), "at most 4 features, got 9"),
        (lambda: to_qiskit(student.quantum, torch.zeros(2, 2, 2)), r"\(F,\) or \(B, F\)"),
        (lambda: to_qiskit(build_quantum_layer(2, ansatz="none"), torch.zeros(4)),
         "zero norm|zero-norm"),
        (lambda: probabilities_from_counts({"011": 1}, 2), "does not have 2 bits"),
    ]
    for call, message in cases:
        with pytest.raises(QdistillError, match=message):
            call()
    monkeypatch.setitem(sys.modules, "qiskit", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "pennylane", None)
    with pytest.raises(QdistillError, match=r"pip install qdistill\[qiskit\]"):
        to_qiskit(student, images[0])
    with pytest.raises(QdistillError, match=r"pip install qdistill\[qiskit\]"):
        predict_with(student, images, backend="qiskit")
    with pytest.raises(QdistillError, match=r"pip install qdistill\[pennylane\]"):
        predict_with(student, images, backend="pennylane")
