"""Benchmark: student training speed (not a test).

1. The paper-v2 student's quantum part (amplitude encoding of 2^Q features -> the v2
   rotation block -> <Z> of each qubit), forward + backward at batch 128, qdistill vs
   PennyLane default.qubit (backprop, broadcasting), median ms and ratio.
2. One training epoch of the whole 8-qubit paper-v2 student (FC 784 -> 256, amplitude,
   v2 block, Linear 8 -> 10) over the 60,000 MNIST training images, batch 128, Adam.
3. One paper-v1 student epoch at the paper's protocol (900 images, batch 1).

    python benchmarks/students.py                 # all three
    python benchmarks/students.py --qubits 4 8 --skip-epoch
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from qdistill.config import StudentConfig, TrainConfig
from qdistill.students import PaperV2Student, build_student
from qdistill.training.evaluation import as_float
from qdistill.training.fit import cpu_threads, make_adam


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t))
    return statistics.median(times)


def v2_quantum_qdistill(q: int, batch: int):
    student = PaperV2Student(10, (1, 28, 28), qubits=q)
    layer = student.quantum
    x = torch.rand(batch, 2**q)

    def step():
        layer.zero_grad()
        layer(x).sum().backward()
    return step


def v2_quantum_pennylane(q: int, batch: int, block):
    """The same circuit in PennyLane (parameters of the same layout; timing only)."""
    import pennylane as qml

    dev = qml.device("default.qubit", wires=q)

    @qml.qnode(dev, interface="torch", diff_method="backprop")
    def circuit(x, rx, ry, rz, shared):
        qml.AmplitudeEmbedding(x, wires=range(q), normalize=True)
        for i in range(q):
            qml.RX(rx[i], wires=i)
            qml.RY(ry[i], wires=i)
            qml.RZ(rz[i], wires=i)
            qml.RX(rx[i], wires=i)
        for i in range(q):
            qml.RX(shared[0], wires=i)
            qml.RY(shared[1], wires=i)
            qml.RZ(shared[2], wires=i)
        return [qml.expval(qml.PauliZ(i)) for i in range(q)]

    x = torch.rand(batch, 2**q)
    params = [p.detach().clone().requires_grad_(True) for p in block]

    def step():
        torch.stack(circuit(x, *params), -1).sum().backward()
    return step


def bench_v2_quantum(qubits: list[int], batch: int, repeats: int) -> None:
    print(f"\n## paper-v2 quantum layer, batch {batch}, fwd+bwd median ms "
          f"({torch.get_num_threads()} threads)\n")
    print("| qubits | qdistill | PennyLane default.qubit | ratio |\n|---|---|---|---|")
    for q in qubits:
        ours = v2_quantum_qdistill(q, batch)
        t_ours = _median_ms(ours, repeats)
        try:
            import pennylane  # noqa: F401
            t_pl = _median_ms(v2_quantum_pennylane(q, batch, _v2_params(q)), max(3, repeats // 5))
            print(f"| {q} | {t_ours:.2f} | {t_pl:.1f} | {t_pl / t_ours:.1f}x |")
        except ImportError:
            print(f"| {q} | {t_ours:.2f} | (pennylane not installed) | |")


def _v2_params(q: int):
    """Random v2-block parameters in the layout the PennyLane circuit takes."""
    g = torch.Generator().manual_seed(0)
    return [torch.rand(q, generator=g) for _ in range(3)] + [torch.rand(3, generator=g)]


def bench_v2_epoch(batch: int = 128) -> None:
    from qdistill.data import load_raw

    raw = load_raw("mnist")
    x_all, y_all = raw.train_images, raw.train_labels
    torch.manual_seed(0)
    student = build_student(StudentConfig(name="paper-v2", qubits=8), 10, (1, 28, 28))
    opt = make_adam(student, TrainConfig())
    order = torch.randperm(len(y_all))
    t = time.perf_counter()
    for s in range(0, len(y_all), batch):
        idx = order[s:s + batch]
        loss = torch.nn.functional.cross_entropy(student(as_float(x_all[idx])), y_all[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    dt = time.perf_counter() - t
    print(f"\n## one epoch, paper-v2 student (8 qubits, FC + amplitude), 60,000 MNIST "
          f"images, batch {batch}: {dt:.2f} s ({len(y_all) / dt:,.0f} samples/s, "
          f"{torch.get_num_threads()} threads)")


def bench_v1_epoch() -> None:
    from qdistill.data import make_task

    task = make_task("mnist", "0-5", train_per_class=150)
    torch.manual_seed(0)
    student = build_student(StudentConfig(name="paper-v1", qubits=3), 6, (1, 28, 28))
    opt = make_adam(student, TrainConfig())
    x, y = task.train.images, task.train.labels
    with cpu_threads(1):
        t = time.perf_counter()
        for i in torch.randperm(len(y)).tolist():
            loss = torch.nn.functional.cross_entropy(student(as_float(x[i:i + 1])), y[i:i + 1])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        dt = time.perf_counter() - t
    print(f"\n## one epoch, paper-v1 student (3 qubits), 900 images, batch 1, 1 thread: "
          f"{dt:.2f} s ({1000 * dt / len(y):.2f} ms/step)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qubits", type=int, nargs="+", default=[4, 8, 10, 12])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--skip-epoch", action="store_true", help="only the layer timings")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bench_v2_quantum(args.qubits, args.batch, args.repeats)
    if not args.skip_epoch:
        bench_v2_epoch(args.batch)
        bench_v1_epoch()


if __name__ == "__main__":
    main()
