"""Benchmark: student training throughput in samples/s (not a test).

One training step = forward + backward + Adam on a batch of MNIST-shaped images, for
two students at 8, 12 and 16 qubits:

- ``paper-v2``: FC 784 -> Q, angle encoding, the paper's v2 rotation block, <Z> of
  each qubit, Linear Q -> 10 (the v2 family with one feature per qubit);
- ``quantum``: the fully quantum student, the image average-pooled to Q features (no
  trainable reduction), angle encoding, 4 hardware-efficient layers, log-probabilities
  of the first 10 basis states as the 10 class logits.

On the CPU at 1 and 2 intra-op threads (batch 128), and on CUDA when present at
batch 128 / 1024 / 8192. Prints samples/s and the ratios 2 threads : 1 thread and
CUDA : best CPU.

    python benchmarks/throughput.py                          # everything this machine has
    python benchmarks/throughput.py --qubits 8 12 --steps 3
"""

from __future__ import annotations

import argparse
import time

import torch

from qdistill.config import StudentConfig, TrainConfig
from qdistill.students import build_student
from qdistill.training.fit import cpu_threads, make_adam

STUDENTS = {
    "paper-v2": lambda q: StudentConfig(name="paper-v2", qubits=q, reduction="fc",
                                        encoding="angle"),
    "quantum": lambda q: StudentConfig(name="quantum", qubits=q, reduction="avgpool",
                                       encoding="angle", ansatz="hea", layers=4),
}


def samples_per_s(student: str, q: int, batch: int, device: str, steps: int) -> float:
    torch.manual_seed(0)
    model = build_student(STUDENTS[student](q), 10, (1, 28, 28)).to(device)
    opt = make_adam(model, TrainConfig())
    x = torch.rand(batch, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up (allocations, kernel selection)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - t)


def _fmt(v: float | None) -> str:
    return "-" if v is None else ("OOM" if v < 0 else f"{v:,.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--qubits", type=int, nargs="+", default=[8, 12, 16])
    ap.add_argument("--students", nargs="+", default=list(STUDENTS), choices=list(STUDENTS))
    ap.add_argument("--steps", type=int, default=5, help="timed steps per cell")
    ap.add_argument("--cpu-batch", type=int, default=128)
    ap.add_argument("--gpu-batches", type=int, nargs="+", default=[128, 1024, 8192])
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    print(f"torch {torch.__version__}; CPU threads available: {torch.get_num_threads()}; "
          f"CUDA: {torch.cuda.get_device_name(0) if cuda else 'none'}")
    print("| student | qubits | CPU 1 thread | CPU 2 threads | 2:1 |"
          + "".join(f" CUDA b{b} |" for b in args.gpu_batches) * cuda
          + " CUDA:CPU (best) |" * cuda)
    print("|---|---|---|---|---|" + "---|" * ((len(args.gpu_batches) + 1) * cuda))
    for student in args.students:
        for q in args.qubits:
            cpu = {}
            for threads in (1, 2):
                with cpu_threads(threads):
                    cpu[threads] = samples_per_s(student, q, args.cpu_batch, "cpu", args.steps)
            row = (f"| {student} | {q} | {_fmt(cpu[1])} | {_fmt(cpu[2])} | "
                   f"{cpu[2] / cpu[1]:.2f} |")
            if cuda:
                gpu = []
                for b in args.gpu_batches:
                    try:
                        gpu.append(samples_per_s(student, q, b, "cuda", args.steps))
                    except torch.OutOfMemoryError:
                        gpu.append(-1.0)
                    torch.cuda.empty_cache()
                row += "".join(f" {_fmt(v)} |" for v in gpu)
                row += f" {max(gpu) / max(cpu.values()):.1f}x |"
            print(row, flush=True)


if __name__ == "__main__":
    main()
