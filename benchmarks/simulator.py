"""Benchmark: qdistill's statevector simulator against PennyLane (and TorchQuantum).

Workload (the student-training step): batch-first features ``(B, n)`` -> angle encoding
(RX) -> 4 layers of [RY, RZ on every qubit, CNOT ring] -> ``<Z>`` of every qubit; time
one forward + backward (gradients for the inputs and all angles), median over repeats.
All simulators run in this process, one after another, on the same inputs.

    python benchmarks/simulator.py                      # 4 8 10 12 qubits, batch 128
    python benchmarks/simulator.py --qubits 8 --repeats 50 --designs
    python benchmarks/simulator.py --memory-qubits 12 16 --device cpu

Designs for the layer of single-qubit gates (``--designs`` times them all):

- ``gates``:   every RY and RZ as its own gate (RZ as a diagonal), 2n ops per layer;
- ``chunk1``:  RZ RY fused to one 2x2 per wire, one GEMM per wire (n ops per layer);
- ``chunkK``:  Kronecker product of up to K neighbouring wires' 2x2's, one GEMM per
  block (``ceil(n / K)`` ops per layer); K = 4 is the default (``state.DEFAULT_CHUNK``);
- ``unitary``: the whole 4-layer ansatz composed into one ``2**n x 2**n`` matrix per step
  (``QuantumLayer(fuse=True)``), one GEMM for the batch.

Measured on the 2-core CPU this was written on (torch 2.13, batch 128, complex64,
2 threads, quiet machine; median fwd+bwd ms at 4 / 8 / 10 / 12 qubits):

    default (chunk4)  1.74 /   4.6 /  11.2 /  41.6
    chunk5            3.22 /   5.3 /  12.0 /  45.6
    chunk3            2.24 /   7.3 /  15.1 /  45.7
    chunk2            2.12 /   7.5 /  17.8 /  63.5
    chunk1            2.78 /  17.8 /  53.2 / 237.6
    gates             8.05 /  41.2 /  98.7 / 369.0
    unitary           3.10 /   7.6 /  94.8 /    -
    PennyLane        15.9  /  72.8 / 154.1 / 881.0

Earlier prototypes on the same workload (ms at 8 / 10 / 12, under varying load):
per-qubit elementwise 2x2 17 / 38 / 157, per-qubit broadcast matmul 20 / 63 / 271,
K=4 blocks with broadcast ``matmul(K, X)`` and ``x[:, perm]`` CNOTs 6 / 15 / 53. The
kernels kept (2-D GEMM with a contiguous right operand, gather-based permutations with
an inverse-gather backward, reading permuted views in memory order) are described in
``qdistill.quantum.state``. With other jobs on the machine, use ``--threads 1``: two
OpenMP threads fighting for busy cores inflate small-state timings up to 10x.

Peak memory: on CPU, each configuration runs in a fresh subprocess and reports the
peak resident set (``VmHWM`` in ``/proc/self/status``) minus the resident set after
setup (``VmRSS``). Not ``tracemalloc``: torch's CPU allocator is invisible to it; not
``ru_maxrss``: Linux carries it over ``execve`` from the parent, so a child started by
a large parent reports the parent's peak. On CUDA: ``torch.cuda.max_memory_allocated``.
Each subprocess's address space is capped (``--memory-limit-gib``, default 6).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch

from qdistill.quantum import (
    AngleEncoding,
    ExpvalZ,
    HardwareEfficient,
    QuantumLayer,
    apply_gate,
    apply_permutation,
    basis_permutation,
)
from qdistill.quantum import state as qstate

LAYERS = 4


def make_inputs(n: int, batch: int, device: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, n, generator=g).mul(torch.pi).to(device).requires_grad_()
    w = torch.rand(LAYERS, n, 2, generator=g).mul(2 * torch.pi).to(device).requires_grad_()
    return x, w


def qdistill_model(n: int, design: str, device: str) -> Callable:
    """A function ``(x, w) -> <Z> (B, n)`` for one of the designs in the docstring."""
    ansatz = HardwareEfficient(n, LAYERS, rotations=("ry", "rz"), entangler="ring").to(device)
    fuse = {"default": "auto", "unitary": True}.get(design, False)
    layer = QuantumLayer(AngleEncoding(n, "x"), ansatz, ExpvalZ(), fuse=fuse)

    def run_layer(x, w):
        with torch.no_grad():
            ansatz.weights.copy_(w)  # same angles as the other simulators
        return layer(x)

    if design in ("default", "unitary") or design.startswith("chunk"):
        return run_layer

    if design == "gates":
        perm = basis_permutation(n, [("cnot", p) for p in ansatz.pairs], device)

        def run_gates(x, w):
            state = layer.encoding(x)
            for lay in range(LAYERS):
                for q in range(n):
                    state = apply_gate(state, "ry", [q], w[lay, q, 0])
                    state = apply_gate(state, "rz", [q], w[lay, q, 1])
                state = apply_permutation(state, *perm)
            return layer.measurement(state)

        return run_gates
    raise ValueError(design)


def pennylane_model(n: int):
    import pennylane as qml

    dev = qml.device("default.qubit", wires=n)

    @qml.qnode(dev, interface="torch", diff_method="backprop")
    def circuit(x, w):
        qml.AngleEmbedding(x, wires=range(n), rotation="X")
        for lay in range(LAYERS):
            for q in range(n):
                qml.RY(w[lay, q, 0], wires=q)
                qml.RZ(w[lay, q, 1], wires=q)
            if n > 1:
                pairs = [(0, 1)] if n == 2 else [(q, (q + 1) % n) for q in range(n)]
                for c, t in pairs:
                    qml.CNOT(wires=[c, t])
        return [qml.expval(qml.PauliZ(q)) for q in range(n)]

    def run(x, w):
        return torch.stack(circuit(x, w), dim=-1)

    return run


def torchquantum_model(n: int):  # pragma: no cover - only when torchquantum is installed
    import torchquantum as tq
    import torchquantum.functional as tqf

    measure = tq.MeasureAll(tq.PauliZ)
    pairs = [(0, 1)] if n == 2 else [(q, (q + 1) % n) for q in range(n)] if n > 2 else []

    def run(x, w):
        bsz = x.shape[0]
        qdev = tq.QuantumDevice(n_wires=n, bsz=bsz, device=x.device)
        for q in range(n):
            tqf.rx(qdev, wires=q, params=x[:, q])
        for lay in range(LAYERS):
            for q in range(n):
                tqf.ry(qdev, wires=q, params=w[lay, q, 0].expand(bsz))
                tqf.rz(qdev, wires=q, params=w[lay, q, 1].expand(bsz))
            for c, t in pairs:
                tqf.cnot(qdev, wires=[c, t])
        return measure(qdev)

    return run


def time_step(fn: Callable, x, w, repeats: int, device: str) -> tuple[float, torch.Tensor]:
    """Median ms of forward + backward (after 3 warm-up steps), and the output."""
    times = []
    for i in range(repeats + 3):
        x.grad = w.grad = None
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn(x, w)
        out.float().sum().backward()
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times), out.detach()


def _status_kib(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (VmRSS: resident now; VmHWM: peak)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(sim: str, n: int, batch: int, device: str, limit_gib: float) -> None:
    """Run one step and print the peak memory increase as JSON (subprocess entry).

    The address space is capped at ``limit_gib`` so a simulator that would need more
    fails with an allocation error instead of pushing the machine into the OOM killer.
    """
    cap = int(limit_gib * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    x, w = make_inputs(n, batch, device)
    fn = pennylane_model(n) if sim == "pennylane" else qdistill_model(n, "default", device)
    rss_kib = _status_kib("VmRSS")  # resident set after setup
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    fn(x, w).float().sum().backward()
    secs = time.perf_counter() - t0
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = (_status_kib("VmHWM") - rss_kib) / 1024
    print(json.dumps({"peak_mib": peak, "seconds": secs}))


def measure_memory(sim: str, n: int, batch: int, device: str, timeout: float,
                   limit_gib: float) -> str:
    cmd = [sys.executable, __file__, "--memory-child", sim, str(n), str(batch), str(limit_gib),
           "--device", device]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"> {timeout:.0f} s, skipped"
    if res.returncode != 0:
        if "alloc" in res.stderr.lower() or "memory" in res.stderr.lower():
            return f"> {limit_gib:g} GiB (allocation refused)"
        tail = (res.stderr.strip().splitlines() or ["?"])[-1][:60]
        return f"failed ({tail})"
    data = json.loads(res.stdout.strip().splitlines()[-1])
    return f"{data['peak_mib']:.0f} MiB (first step {data['seconds']:.2f} s)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--qubits", type=int, nargs="+", default=[4, 8, 10, 12])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--designs", action="store_true", help="also time the alternative designs")
    ap.add_argument("--memory-qubits", type=int, nargs="*", default=[12, 16])
    ap.add_argument("--memory-timeout", type=float, default=300)
    ap.add_argument("--memory-limit-gib", type=float, default=6.0,
                    help="address-space cap of each memory subprocess")
    ap.add_argument("--no-pennylane", action="store_true")
    ap.add_argument("--memory-child", nargs=4, metavar=("SIM", "N", "B", "GIB"),
                    help=argparse.SUPPRESS)
    args, rest = ap.parse_known_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child is not None:
        sim, n, b = args.memory_child[0], int(args.memory_child[1]), int(args.memory_child[2])
        memory_child(sim, n, b, args.device, float(args.memory_child[3]))
        return
    if rest:
        ap.error(f"unknown arguments {rest}")

    try:
        import torchquantum  # noqa: F401
        have_tq = True
    except ImportError:
        have_tq = False
    have_pl = False
    if not args.no_pennylane:
        try:
            import pennylane  # noqa: F401
            have_pl = True
        except ImportError:
            pass

    designs = ["default"] + (["gates", "chunk1", "chunk2", "chunk3", "chunk5", "unitary"]
                            if args.designs else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, "
          f"batch {args.batch}, {LAYERS} layers, median of {args.repeats}")
    if not have_tq:
        print("TorchQuantum: not installed, skipped.")
    header = ["qubits", "qdistill (ms)"] + [d for d in designs[1:]]
    if have_pl:
        header += ["PennyLane (ms)", "PennyLane / qdistill", "max |diff|"]
    if have_tq:
        header += ["TorchQuantum (ms)", "TorchQuantum / qdistill"]
    print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for n in args.qubits:
        x, w = make_inputs(n, args.batch, args.device)
        row = [str(n)]
        times = {}
        ref = None
        for d in designs:
            if d == "unitary" and n > 10:
                row.append("-")
                continue
            qstate.DEFAULT_CHUNK = int(d[5:]) if d.startswith("chunk") else 4
            t, out = time_step(qdistill_model(n, d, args.device), x, w, args.repeats,
                               args.device)
            qstate.DEFAULT_CHUNK = 4
            times[d] = t
            ref = out if ref is None else ref
            row.append(f"{t:.2f}")
        if have_pl:
            reps = max(3, args.repeats // 4) if n >= 12 else args.repeats
            t, out = time_step(pennylane_model(n), x, w, reps, args.device)
            diff = (out.to(ref.dtype) - ref).abs().max().item()
            row += [f"{t:.1f}", f"{t / times['default']:.1f}x", f"{diff:.1e}"]
        if have_tq:
            try:
                t, _ = time_step(torchquantum_model(n), x, w, args.repeats, args.device)
                row += [f"{t:.1f}", f"{t / times['default']:.1f}x"]
            except Exception as err:  # noqa: BLE001 - report and go on
                row += [f"failed: {type(err).__name__}", "-"]
        print("| " + " | ".join(row) + " |", flush=True)

    if args.memory_qubits:
        print(f"\nPeak memory of one fwd+bwd step, batch {args.batch} "
              + ("(CUDA max_memory_allocated)" if args.device == "cuda"
                 else "(CPU: VmHWM - VmRSS in a fresh subprocess)") + ":\n")
        print("| qubits | qdistill | PennyLane |\n|---|---|---|")
        for n in args.memory_qubits:
            lim = args.memory_limit_gib
            mine = measure_memory("qdistill", n, args.batch, args.device, args.memory_timeout, lim)
            pl = (measure_memory("pennylane", n, args.batch, args.device, args.memory_timeout,
                                 lim) if have_pl else "-")
            print(f"| {n} | {mine} | {pl} |", flush=True)


if __name__ == "__main__":
    main()
