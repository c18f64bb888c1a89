"""Benchmark: a PennyLane ``qml.qnn.TorchLayer`` as a student's circuit, against the same
circuit built from ``qdistill.quantum`` (not a test; nothing here asserts a time).

The circuit, built both ways (4 qubits): amplitude encoding of 16 features ->
3 StronglyEntangling layers (Rot on every wire, CNOT(i, i + r) ring, r = 1, 2, 3) ->
<Z> of every qubit. qdistill: ``QuantumLayer(AmplitudeEncoding(4),
StronglyEntangling(4, 3), ExpvalZ())`` (complex64). PennyLane: a QNode on
``default.qubit`` (interface torch, diff_method backprop) of ``AmplitudeEmbedding(
normalize=True)`` + ``StronglyEntanglingLayers`` in a ``TorchLayer``, as a user student
writes it (tests/test_own_student.py). The weights are copied across (same layout).

Each circuit sits in the same student (8x8 images -> Linear(64 -> 16) -> circuit ->
Linear(4 -> 10)); one training step = forward, cross-entropy, backward, Adam step.
The two students' steps are timed alternately (so background load hits both alike),
on CPU with ``torch.set_num_threads(1)``, median over repeats after warm-up.

    python benchmarks/pennylane_layer.py            # batch 1, 32, 128 (~15 s)
    python benchmarks/pennylane_layer.py --quick    # batch 1, 32, fewer repeats

Prints the largest |difference| of the two students' circuit outputs, logits and
gradients (same weights, same inputs; exits with an error above 1e-5), then a table:
batch | ms/step qdistill | ms/step PennyLane | ratio (PennyLane / qdistill).

Measured on the 2-core CPU this was written on (torch 2.13, PennyLane 0.45.1, 1 thread,
a niced job on the other core; four runs): qdistill 1.6-2.0 ms, PennyLane 8.9-10.9 ms
per step at every batch size, ratio 5.2-5.7x (one outlier: 14.8 ms, 7.8x, at batch 1
under load). Both are flat from batch 1 to 128: at 4 qubits a step is per-call
overhead, not arithmetic. cProfile of the PennyLane step (batch 32): 71 % inside the
QNode call (tape construction, preprocessing transforms, then each gate applied on its
own: a Rot matrix built and einsum'd per gate), 23 % in the backward through those
per-gate ops.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import qdistill.quantum as q
from qdistill.students import Student

N_QUBITS, N_LAYERS, N_CLASSES = 4, 3, 10
IMAGE_SHAPE = (1, 8, 8)  # the digits data set's images
TOLERANCE = 1e-5  # complex64 (qdistill) vs PennyLane: measured 2.2e-7 (<Z>), 5e-8 (grads)


def pennylane_circuit() -> nn.Module:
    """The circuit as a user writes it with PennyLane: a QNode in a TorchLayer."""
    import pennylane as qml

    dev = qml.device("default.qubit", wires=N_QUBITS)

    @qml.qnode(dev, interface="torch", diff_method="backprop")
    def qnode(inputs, weights):
        qml.AmplitudeEmbedding(inputs, wires=range(N_QUBITS), normalize=True)
        qml.StronglyEntanglingLayers(weights, wires=range(N_QUBITS))
        return [qml.expval(qml.PauliZ(w)) for w in range(N_QUBITS)]

    return qml.qnn.TorchLayer(qnode, {"weights": (N_LAYERS, N_QUBITS, 3)})


def qdistill_circuit() -> nn.Module:
    return q.QuantumLayer(q.AmplitudeEncoding(N_QUBITS), q.StronglyEntangling(N_QUBITS, N_LAYERS),
                          q.ExpvalZ())


class BenchStudent(Student):
    """The student of tests/test_own_student.py's PennyLane example, 16 features wide."""

    def __init__(self, circuit: nn.Module):
        super().__init__()
        self.num_classes, self.class_outputs = N_CLASSES, list(range(N_CLASSES))
        self.image_shape = IMAGE_SHAPE
        self.reduce = nn.Linear(64, 2 ** N_QUBITS)
        self.circuit = circuit
        self.head = nn.Linear(N_QUBITS, N_CLASSES)

    def circuit_input(self, x: torch.Tensor) -> torch.Tensor:
        return self.reduce(x.flatten(1))

    def logits_from_circuit(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(z.float())


def students() -> tuple[BenchStudent, BenchStudent]:
    """The two students with the same weights (PennyLane's copied from qdistill's)."""
    torch.manual_seed(0)
    ours = BenchStudent(qdistill_circuit())
    pl = BenchStudent(pennylane_circuit())
    with torch.no_grad():
        pl.reduce.load_state_dict(ours.reduce.state_dict())
        pl.head.load_state_dict(ours.head.state_dict())
        pl.circuit.weights.copy_(ours.circuit.ansatz.weights)  # both (L, n, 3), Rot angles
    return ours, pl


def check_same(batch: int = 8) -> None:
    """Same <Z>, logits and loss gradients (every parameter) within TOLERANCE."""
    ours, pl = students()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(batch, *IMAGE_SHAPE, generator=g)
    y = torch.randint(0, N_CLASSES, (batch,), generator=g)
    diffs = {}
    with torch.no_grad():
        feats = ours.circuit_input(x)
        diffs["<Z>"] = (ours.circuit(feats) - pl.circuit(feats).float()).abs().max().item()
    for s in (ours, pl):
        nn.functional.cross_entropy(s(x), y).backward()
    diffs["logits"] = (ours(x) - pl(x)).abs().max().item()
    grads = [(a.grad - b.grad).abs().max().item()
             for a, b in zip(ours.parameters(), pl.parameters(), strict=True)]
    diffs["gradients"] = max(grads)
    print("same student, same inputs: max |qdistill - PennyLane| "
          + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()))
    if max(diffs.values()) > TOLERANCE:
        raise SystemExit(f"the two circuits differ by more than {TOLERANCE}: {diffs}")


def train_step(student: BenchStudent, batch: int):
    """One Adam step on a fixed random batch (the data does not change the cost)."""
    g = torch.Generator().manual_seed(batch)
    x = torch.rand(batch, *IMAGE_SHAPE, generator=g)
    y = torch.randint(0, N_CLASSES, (batch,), generator=g)
    opt = torch.optim.Adam(student.parameters(), lr=0.01)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(student(x), y).backward()
        opt.step()
    return step


def time_pair(batch: int, repeats: int, warmup: int) -> tuple[float, float]:
    """Median ms per step of each student, the two timed alternately."""
    ours, pl = students()
    steps = [train_step(ours, batch), train_step(pl, batch)]
    for _ in range(warmup):  # first calls build caches (permutations, PennyLane's tape)
        for step in steps:
            step()
    times: list[list[float]] = [[], []]
    for _ in range(repeats):
        for i, step in enumerate(steps):
            t = time.perf_counter()
            step()
            times[i].append(1000 * (time.perf_counter() - t))
    return statistics.median(times[0]), statistics.median(times[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="batch 1 and 32, fewer repeats")
    ap.add_argument("--batches", type=int, nargs="+", default=None)
    ap.add_argument("--repeats", type=int, default=None, help="timed steps per student")
    args = ap.parse_args()
    # One thread: the students' steps are small (a 4-qubit state is 16 amplitudes), and
    # two OpenMP threads on a shared 2-core machine only add noise.
    torch.set_num_threads(1)
    batches = args.batches or ([1, 32] if args.quick else [1, 32, 128])
    repeats = args.repeats or (20 if args.quick else 100)

    check_same()
    print(f"\nStudent training step (Linear 64 -> 16, {N_QUBITS} qubits amplitude + "
          f"{N_LAYERS} StronglyEntangling layers, <Z>, Linear 4 -> 10; CE, Adam), "
          f"CPU, {torch.get_num_threads()} thread, median of {repeats}:\n")
    print("| batch | ms/step qdistill | ms/step PennyLane TorchLayer | ratio |")
    print("|---|---|---|---|")
    for b in batches:
        t_ours, t_pl = time_pair(b, repeats, warmup=10)
        print(f"| {b} | {t_ours:.2f} | {t_pl:.2f} | {t_pl / t_ours:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
