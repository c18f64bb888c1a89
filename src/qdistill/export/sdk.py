"""Run a trained student's circuit in Qiskit or PennyLane, and classify with it.

    from qdistill.export.sdk import predict_with, to_pennylane, to_qiskit
    from qdistill.distillation.run import load_student

    student, meta = load_student("runs/distill/my-run")
    qc = to_qiskit(student, image)           # one image (C, H, W), uint8 or float in [0, 1]
    qnode = to_pennylane(student, images)    # a batch: qnode() -> (B, 2**k), one broadcast call
    pred = predict_with(student, images, backend="qiskit", shots=1000, seed=0)
    pred.predictions, pred.logits, pred.probabilities

Needs the extras ``pip install qdistill[qiskit]`` / ``qdistill[pennylane]``; both are
imported only when used. A student is classical pre-processing -> a circuit ->
classical head. ``student.circuit_input`` (torch) gives what the circuit encodes, the
SDK runs the circuit (the image's inputs baked in as gate angles, the same gate list as
the OpenQASM 3 export), and ``student.logits_from_circuit`` turns the SDK's
probabilities into the student's own logits. A bare circuit (a ``QuantumLayer``, the
paper-v1 ``V1Circuit``) can be converted too; then the input is the features ``(F,)``.
The circuit is the ideal one: a noise model a student was trained under is not part of
it (add the SDK's own noise model to the simulator or run on hardware).

Qubit order. qdistill wire ``k`` is Qiskit qubit ``k`` and PennyLane wire ``k``. The
readout wires are the measurement's (all wires unless the layer names some, e.g.
QCNN); probabilities come in qdistill's order: index ``j`` reads ``wires[0]`` as its
most significant bit, ``j = sum_i b_i 2**(k-1-i)`` (as ``qml.probs``). Qiskit is
little-endian: ``Statevector.probabilities()`` index ``i`` reads qubit 0 as the least
significant bit, so ``probabilities(qargs=wires[::-1])`` is qdistill's vector; the
circuit measures ``wires[i]`` into clbit ``c[i]``, a counts key prints
``c[k-1] ... c[0]``, and ``j = int(key[::-1], 2)`` (:func:`probabilities_from_counts`).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from ..errors import QdistillError
from ..quantum.gates import Op
from ..quantum.measure import Probs, z_signs
from ..quantum.qasm import standard_gate
from ..students import Student
from ..training.evaluation import class_logits
from .openqasm import _exact, image_from_array

__all__ = ["BACKENDS", "CircuitBatch", "SDKPrediction", "circuit_batch", "predict_with",
           "probabilities_from_counts", "qiskit_circuits", "to_pennylane", "to_qiskit"]

BACKENDS = ("qiskit", "pennylane")
# OpenQASM 3 name (quantum.qasm.QASM_GATES, the one Op -> gate table) -> PennyLane class
# name; Qiskit's QuantumCircuit methods are the OpenQASM names in lower case.
_PENNYLANE = {"h": "Hadamard", "x": "PauliX", "y": "PauliY", "z": "PauliZ", "rx": "RX",
              "ry": "RY", "rz": "RZ", "U": "U3", "cx": "CNOT", "cz": "CZ", "swap": "SWAP",
              "crx": "CRX", "cry": "CRY", "crz": "CRZ"}


class CircuitBatch(NamedTuple):
    """The circuits of a batch of inputs, as the SDKs need them."""

    gates: list[list[tuple[str, tuple[int, ...], tuple[float, ...]]]]  # per input
    n_qubits: int
    wires: list[int]  # readout wires, in the order of the layer's output
    readout: str  # "probs": the layer outputs probabilities; "expval": <Z> per wire


class SDKPrediction(NamedTuple):
    """What :func:`predict_with` returns (torch tensors)."""

    predictions: torch.Tensor  # (B,) class indices (argmax of logits)
    logits: torch.Tensor  # (B, K) the student's class logits (float32)
    probabilities: torch.Tensor  # (B, 2**k) float64: the SDK's, of the readout wires


# --------------------------------------------------------------------- imports ---

def _qiskit() -> Any:
    try:
        import qiskit
    except ImportError:
        raise QdistillError("Qiskit is not installed; pip install qdistill[qiskit]") from None
    return qiskit


def _pennylane() -> Any:
    try:
        import pennylane
    except ImportError:
        raise QdistillError("PennyLane is not installed; pip install qdistill[pennylane]"
                            ) from None
    return pennylane


# -------------------------------------------------------------------- circuits ---

def _gate(op: Op, n_qubits: int) -> tuple[str, tuple[int, ...], tuple[float, ...]]:
    """(OpenQASM 3 name, wires, angles) of one Op, checked against QASM_GATES."""
    try:
        return standard_gate(op, n_qubits)
    except ValueError as exc:
        raise QdistillError(str(exc)) from None


def _student_images(student: nn.Module, images: Any) -> torch.Tensor:
    """(B, C, H, W) float images from one image or a batch (B, ...), uint8 0..255 or
    float 0..1; one-channel images may leave out C."""
    shape = tuple(student.image_shape)
    one = {shape, shape[1:]} if shape[0] == 1 else {shape}
    a = images if isinstance(images, torch.Tensor) else np.asarray(images)
    dims = tuple(a.shape)
    if dims in one:
        return image_from_array(a, shape)
    if len(dims) > 1 and dims[0] > 0 and dims[1:] in one:
        return torch.cat([image_from_array(image, shape) for image in a])
    raise QdistillError(f"input has shape {dims}; this student takes an image of shape "
                        f"{' or '.join(map(str, sorted(one, key=len, reverse=True)))}, or a "
                        "non-empty batch of them")


@contextlib.contextmanager
def _eval(model: nn.Module) -> Iterator[None]:
    """Eval mode (no dropout) and exact measurements for the duration."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _exact(model):
            yield
    finally:
        model.train(was_training)


def _features(x: Any) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach()
    if t.dim() not in (1, 2) or not t.is_floating_point():
        raise QdistillError(f"a quantum layer takes float features (F,) or (B, F); got "
                            f"shape {tuple(t.shape)}, dtype {t.dtype}")
    return t.reshape(1, -1) if t.dim() == 1 else t


def circuit_batch(model: nn.Module, inputs: Any) -> CircuitBatch:
    """The gates (concrete angles) of every input, the readout wires and kind.

    ``model``: a student (any :class:`~qdistill.students.Student`; ``inputs``: one image
    or a batch, uint8 0..255 or float 0..1), or a circuit of ``qdistill.quantum`` (a
    :class:`QuantumLayer`, the paper-v1 ``V1Circuit``, ...; ``inputs``: features
    ``(F,)`` or ``(B, F)``).
    """
    if isinstance(model, Student):
        images = _student_images(model, inputs)
        with _eval(model):
            features = model.circuit_input(images)
        circuit: nn.Module = model.circuit
    else:
        circuit = model
    if not all(hasattr(circuit, a) for a in ("ops", "n_qubits", "measurement")):
        raise QdistillError(f"cannot convert a {type(circuit).__name__}; give a student or a "
                            "circuit built from qdistill.quantum (ops, n_qubits, measurement)")
    if not isinstance(model, Student):
        features = _features(inputs)
    n, measured = circuit.n_qubits, circuit.measurement.wires
    wires = list(range(n)) if measured is None else list(measured)
    readout = "probs" if isinstance(circuit.measurement, Probs) else "expval"
    try:
        gates = [[_gate(op, n) for op in circuit.ops(row)] for row in features]
    except (ValueError, NotImplementedError) as exc:  # wrong width, zero-norm amplitudes
        raise QdistillError(f"cannot build the circuit for this input: {exc}") from None
    return CircuitBatch(gates, n, wires, readout)


def _one(batch: CircuitBatch, what: str) -> CircuitBatch:
    if len(batch.gates) != 1:
        raise QdistillError(f"{what} builds one circuit for one input, got a batch of "
                            f"{len(batch.gates)}" + ("; use qiskit_circuits" if what ==
                                                     "to_qiskit" else ""))
    return batch


def _qiskit_circuit(qiskit: Any, gates: Sequence[tuple[str, tuple[int, ...],
                                                         tuple[float, ...]]],
                    batch: CircuitBatch, measure: bool) -> Any:
    k = len(batch.wires)
    qc = (qiskit.QuantumCircuit(batch.n_qubits, k, name="qdistill") if measure
          else qiskit.QuantumCircuit(batch.n_qubits, name="qdistill"))
    for name, wires, angles in gates:
        getattr(qc, name.lower())(*angles, *wires)
    if measure:
        qc.measure(batch.wires, list(range(k)))
    qc.metadata = {"readout_wires": batch.wires, "readout": batch.readout,
                   "bit_order": "clbit c[i] = readout_wires[i]; qdistill index "
                                "j = int(counts_key[::-1], 2)"}
    return qc


def to_qiskit(model: nn.Module, inputs: Any, measure: bool = True) -> Any:
    """A ``qiskit.QuantumCircuit`` of the student (or layer) for one input.

    Qubit ``k`` is qdistill wire ``k``; with ``measure`` the readout wires are measured,
    ``wires[i]`` into clbit ``c[i]`` (see the module docstring for reading counts).
    ``qc.metadata["readout_wires"]`` names them. Gates: h x y z rx ry rz u cx cz swap
    crx cry crz, angles as in qdistill (``u`` is Qiskit's ``UGate``, OpenQASM ``U``).
    """
    qiskit = _qiskit()
    batch = _one(circuit_batch(model, inputs), "to_qiskit")
    return _qiskit_circuit(qiskit, batch.gates[0], batch, measure)


def qiskit_circuits(model: nn.Module, inputs: Any, measure: bool = True) -> list[Any]:
    """:func:`to_qiskit` for every input of a batch (one circuit each)."""
    qiskit = _qiskit()
    batch = circuit_batch(model, inputs)
    return [_qiskit_circuit(qiskit, gates, batch, measure) for gates in batch.gates]


def to_pennylane(model: nn.Module, inputs: Any, shots: int | None = None,
                 seed: int | None = None) -> Any:
    """A ``qml.QNode`` (no arguments, ``default.qubit``) returning ``qml.probs`` of the
    readout wires, in qdistill's order (``wires[0]`` most significant).

    One input (or a batch of one) gives ``(2**k,)``; a batch of ``B > 1`` gives
    ``(B, 2**k)`` from one broadcast execution (every input has the same gate
    structure; only angles differ).
    ``shots=None`` is exact; otherwise ``shots`` samples, seeded by ``seed``.
    """
    shots = _check_shots(shots)
    return _qnode(_pennylane(), circuit_batch(model, inputs), shots, seed)


def _qnode(qml: Any, batch: CircuitBatch, shots: int | None, seed: int | None) -> Any:
    structure = [(name, wires, len(angles)) for name, wires, angles in batch.gates[0]]
    if any([(name, wires, len(a)) for name, wires, a in g] != structure for g in batch.gates):
        raise RuntimeError("inputs of one batch have different gate structures; this is a "
                           "qdistill bug")
    angles = np.array([[a for _, _, gate_angles in g for a in gate_angles]
                       for g in batch.gates])  # (B, all angles of the circuit)
    columns = angles[0] if len(batch.gates) == 1 else angles.T  # broadcast over B
    gates = [(getattr(qml, _PENNYLANE[name]), list(wires), count)
             for name, wires, count in structure]

    def circuit() -> Any:
        at = 0
        for cls, wires, count in gates:
            cls(*columns[at:at + count], wires=wires)
            at += count
        return qml.probs(wires=batch.wires)

    if "shots" in inspect.signature(qml.QNode).parameters:  # PennyLane >= 0.42
        device = qml.device("default.qubit", wires=batch.n_qubits, seed=seed)
        return qml.QNode(circuit, device, shots=shots)
    device = qml.device("default.qubit", wires=batch.n_qubits, shots=shots, seed=seed)
    return qml.QNode(circuit, device)


# ------------------------------------------------------------------ predictions ---

def _check_shots(shots: int | None) -> int | None:
    if shots is not None and (isinstance(shots, bool) or not isinstance(shots, int | np.integer)
                              or shots < 1):
        raise QdistillError(f"shots must be None (exact) or a positive integer, got {shots!r}")
    return None if shots is None else int(shots)


def probabilities_from_counts(counts: Mapping[str, int], n_bits: int) -> np.ndarray:
    """Qiskit counts (keys ``c[k-1] ... c[0]``, ``c[i]`` = readout wire ``i``) ->
    frequencies ``(2**k,)`` in qdistill's order (``j = int(key[::-1], 2)``)."""
    freq = np.zeros(2**n_bits)
    for key, count in counts.items():
        if len(key) != n_bits:
            raise QdistillError(f"counts key {key!r} does not have {n_bits} bits")
        freq[int(key[::-1], 2)] += count
    total = freq.sum()
    return freq / total if total else freq


def _run_qiskit(batch: CircuitBatch, shots: int | None, seed: int | None) -> np.ndarray:
    qiskit = _qiskit()
    from qiskit.primitives import StatevectorSampler
    from qiskit.quantum_info import Statevector

    if shots is None:
        qargs = batch.wires[::-1]  # Qiskit's qargs[0] is the least significant bit
        return np.stack([Statevector(_qiskit_circuit(qiskit, g, batch, False))
                         .probabilities(qargs=qargs) for g in batch.gates])
    circuits = [_qiskit_circuit(qiskit, g, batch, True) for g in batch.gates]
    result = StatevectorSampler(seed=seed).run(circuits, shots=shots).result()
    k = len(batch.wires)
    out = []
    for r in result:  # as probabilities_from_counts, without a dict of bit strings
        packed = r.data.c.array  # (shots, bytes), big-endian: the last bit is c[0]
        bits = np.unpackbits(packed, axis=1)[:, -k:]  # column m holds c[k-1-m]
        j = bits.astype(np.int64) @ (1 << np.arange(k))  # c[i] weighs 2**(k-1-i)
        out.append(np.bincount(j, minlength=2**k) / shots)
    return np.stack(out)


def _run_pennylane(batch: CircuitBatch, shots: int | None, seed: int | None) -> np.ndarray:
    probs = np.asarray(_qnode(_pennylane(), batch, shots, seed)(), dtype=float)
    return np.broadcast_to(probs, (len(batch.gates), 2 ** len(batch.wires)))


def predict_with(student: nn.Module, images: Any, backend: str = "qiskit",
                 shots: int | None = None, seed: int | None = None) -> SDKPrediction:
    """Classify ``images`` with the circuit run in ``backend`` ('qiskit' | 'pennylane').

    The student's ``circuit_input`` computes the features (torch), the SDK gives the
    probabilities of the readout wires (exact with ``shots=None``, else ``shots``
    samples per image seeded by ``seed``: Qiskit's ``StatevectorSampler``, PennyLane's
    ``default.qubit``), <Z> is taken from them where the student reads <Z>, and the
    student's own ``logits_from_circuit`` gives the logits.
    """
    if not isinstance(student, Student):
        raise QdistillError(f"predict_with takes a student (qdistill.students.Student), "
                            f"got a {type(student).__name__}")
    if backend not in BACKENDS:
        raise QdistillError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    shots = _check_shots(shots)
    batch = circuit_batch(student, images)
    probs = (_run_qiskit(batch, shots, seed) if backend == "qiskit"
             else _run_pennylane(batch, shots, seed))
    p = torch.tensor(np.array(probs, dtype=np.float64))
    out = p if batch.readout == "probs" else p @ z_signs(len(batch.wires), dtype=p.dtype)
    with _eval(student):
        logits = class_logits(student, student.logits_from_circuit(out.float()))
    return SDKPrediction(logits.argmax(1), logits, p)
