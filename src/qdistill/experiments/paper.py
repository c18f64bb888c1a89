"""The numbers qdistill answers to: what arXiv:2311.13810's notebooks printed.

Source: ../shared/docs/PAPER.md (read from the authors' MIT-licensed notebooks,
github.com/junayed-hasan/Quantum-Machine-Learning-Qiskit-PyTorch). One unseeded run per
cell, best *test* accuracy over 10 epochs (model selection on the test set): compare
with our "paper metric" column, and read our selected-on-validation numbers as the
honest ones.
"""

from __future__ import annotations

# (dataset, classes, qubits) -> {teacher: best test accuracy %}; shots as in the paper.
V1_STUDENTS: dict[tuple[str, str, int], dict[str, float]] = {
    ("mnist", "0-5", 3): {"none": 96.56, "lenet": 97.89, "alexnet": 97.44, "ensemble": 97.33},
    ("mnist", "0-7", 3): {"none": 93.75, "lenet": 93.75, "alexnet": 94.92, "ensemble": 95.42},
    ("mnist", "0-7", 4): {"none": 93.83, "lenet": 94.33, "alexnet": 94.17, "ensemble": 94.00},
    ("fashion-mnist", "0-5", 3): {"none": 65.00, "lenet": 77.00, "alexnet": 83.44,
                                  "ensemble": 67.89},
    ("fashion-mnist", "0-7", 3): {"none": 68.00, "lenet": 68.67, "alexnet": 73.42,
                                  "ensemble": 74.42},
    ("fashion-mnist", "0-7", 4): {"none": 74.25, "lenet": 75.83, "alexnet": 75.42,
                                  "ensemble": 72.50},
}

# Cells whose notebook run was not what it claims (PAPER.md notes a and b).
V1_FLAGS: dict[tuple[str, str, int, str], str] = {
    ("mnist", "0-7", 4, "lenet"): "no working KD term in the paper's run",
    ("fashion-mnist", "0-7", 3, "lenet"): "no working KD term in the paper's run",
    ("fashion-mnist", "0-7", 4, "lenet"): "no working KD term in the paper's run",
    ("fashion-mnist", "0-5", 3, "none"): "paper's baseline used another head",
    ("fashion-mnist", "0-7", 3, "none"): "paper's baseline used another head",
}

# The paper's shots per setting: 5000 (3 qubits, 6 classes), 3000 (3 qubits, 8 classes),
# 2000 (4 qubits).
V1_SHOTS: dict[tuple[str, int], int] = {("0-5", 3): 5000, ("0-7", 3): 3000, ("0-7", 4): 2000}

# Teacher best test accuracy % (dataset, classes) -> {arch: acc}.
V1_TEACHERS: dict[tuple[str, str], dict[str, float]] = {
    ("mnist", "0-5"): {"lenet": 99.50, "alexnet": 99.72, "ensemble": 99.73},
    ("mnist", "0-7"): {"lenet": 99.16, "alexnet": 99.51, "ensemble": 99.58},
    ("fashion-mnist", "0-5"): {"lenet": 91.57, "alexnet": 94.90, "ensemble": 95.67},
    ("fashion-mnist", "0-7"): {"lenet": 85.97, "alexnet": 91.64, "ensemble": 91.79},
}

# Abstract's claim: average KD gain in points.
V1_CLAIMED_GAIN = {"mnist": 0.80, "fashion-mnist": 5.40}

# v2 (Mar 2025): 10 classes, FC reduction + amplitude encoding, read off the bar chart
# (../shared/reference/paper-v2-ablation-errors.png, about +-1.5 points).
V2_STUDENTS: dict[tuple[str, int], float] = {
    ("mnist", 4): 78.0, ("mnist", 8): 90.0,
    ("fashion-mnist", 4): 78.0, ("fashion-mnist", 8): 83.0,
    ("cifar10", 4): 26.0, ("cifar10", 8): 31.0,
}
