"""The grids ``qdistill reproduce GRID`` trains: the paper's (paper-v1, paper-v2, here)
and the pre-registered KD study (kd-study: kd_study.py).

A grid is a function from ``GridOptions`` to a list of ``Run`` (an id, the table row it
belongs to and its full ``DistillConfig``); ``GRIDS`` is the table of them and
``PAPER_TABLES`` the paper's numbers for the paper grids' rows. Adding a grid is a
function and an entry in ``GRIDS`` (and, for its own report, in reproduce.REPORTS).
"""

from __future__ import annotations

from collections.abc import Callable

from ..config import DataConfig, DistillConfig, KDConfig, StudentConfig, TrainConfig
from . import paper
from .kd_study import kd_study_grid
from .plan import GridOptions, Run

V1_SETTINGS = (("0-5", 3), ("0-7", 3), ("0-7", 4))
V1_TEACHERS = ("none", "lenet", "alexnet", "ensemble")
# The fully quantum row: without a teacher and with LeNet-5, the one teacher trained
# with the paper's full schedule in the committed grid (the best-trained teacher).
V1_QUANTUM_TEACHERS = ("none", "lenet")


def _v1_setting(ds: str, classes: str, q: int, student: str = "paper-v1") -> str:
    tag = "" if student == "paper-v1" else ", fully quantum (avgpool + amplitude, hea x4)"
    return f"{ds} {classes}, {q} qubits{tag}"


def paper_v1_grid(opt: GridOptions) -> list[Run]:
    """{MNIST, Fashion-MNIST} x {0-5/3q, 0-7/3q, 0-7/4q} x {none, LeNet, AlexNet,
    Ensemble} x seeds, the paper's student protocol; --quick: MNIST 0-5, 3 qubits,
    none vs LeNet, 2 seeds."""
    datasets = opt.datasets or (("mnist",) if opt.quick else ("mnist", "fashion-mnist"))
    settings = V1_SETTINGS[:1] if opt.quick else V1_SETTINGS
    teachers = opt.teachers or (("none", "lenet") if opt.quick else V1_TEACHERS)
    seeds = range(opt.seeds or (2 if opt.quick else 3))
    # Beyond the paper: a fully quantum student (every trainable parameter in the
    # circuit) with and without the LeNet teacher, as an extra row per setting.
    students = [("paper-v1", teachers)]
    if not opt.quick:
        students.append(("quantum", [t for t in teachers if t in V1_QUANTUM_TEACHERS]))
    runs = []
    for ds in datasets:
        for classes, q in settings:
            for student, student_teachers in students:
                for teacher in student_teachers:
                    t_epochs = (opt.teacher_epochs or {}).get(teacher, 10)
                    tag = "" if teacher == "none" else f"-te{t_epochs}"
                    name = "" if student == "paper-v1" else f"{student}_"
                    for seed in seeds:
                        runs.append(Run(f"{ds}_{classes}_q{q}_{name}{teacher}{tag}_s{seed}",
                                        _v1_setting(ds, classes, q, student),
                                        _v1_config(opt, ds, classes, q, student, teacher,
                                                   t_epochs, seed)))
    return runs


def _v1_config(opt: GridOptions, ds: str, classes: str, q: int, student: str,
               teacher: str, t_epochs: int, seed: int) -> DistillConfig:
    cfg = DistillConfig()
    cfg.data.dataset, cfg.data.classes = ds, classes
    cfg.data.data_dir = opt.data_dir
    shots = paper.V1_SHOTS[(classes, q)] if opt.shots else None
    if student == "paper-v1":
        cfg.student = StudentConfig(name="paper-v1", qubits=q, head=opt.head, shots=shots,
                                    angles=opt.angles)
    else:  # avg-pooled image -> amplitude encoding -> 4 HEA layers -> log(p + 0.01)
        cfg.student = StudentConfig(name="quantum", qubits=q, reduction="avgpool",
                                    encoding="amplitude", ansatz="hea", layers=4,
                                    shots=shots)
    # The paper's as-coded loss: CE + alpha T^2 KL, T = 3, alpha = 0.9.
    cfg.kd = KDConfig(teacher=teacher, temperature=3.0, alpha=0.9, variant="paper",
                      teacher_epochs=t_epochs)
    cfg.train.seed, cfg.train.device = seed, opt.device
    cfg.train.epochs = opt.epochs or 10
    return cfg


# paper-v2 rows: (student, reduction, encoding); the first is the paper's best.
V2_SETTINGS = (
    ("paper-v2", "fc", "amplitude"), ("paper-v2", "crop", "amplitude"),
    ("paper-v2", "pca", "amplitude"), ("paper-v2", "avgpool", "amplitude"),
    ("paper-v2", "maxpool", "amplitude"), ("paper-v2", "fc", "angle"),
    ("paper-v2", "fc", "dense"), ("quantum", "avgpool", "amplitude"),
)


def _v2_setting(ds: str, q: int, student: str, reduction: str, encoding: str) -> str:
    what = "fully quantum, hea x4" if student == "quantum" else f"{reduction} + {encoding}"
    return f"{ds}, {q} qubits, {what}"


def paper_v2_grid(opt: GridOptions) -> list[Run]:
    """10 classes, {MNIST, Fashion-MNIST (, CIFAR-10 with --data-dir)} x {4, 8 qubits} x
    the reduction ablation (amplitude encoding) and the encoding ablation (FC) x {no
    teacher, LeNet} x seeds; the whole training split (10% held out for selection),
    batch 128, Adam 1e-3, T = 3, alpha = 0.9 (Hinton loss). --quick: MNIST, 4 qubits,
    FC + amplitude, 1 seed, 2 epochs."""
    datasets = opt.datasets or (("mnist",) if opt.quick else ("mnist", "fashion-mnist"))
    qubit_counts = (4,) if opt.quick else (4, 8)
    settings = V2_SETTINGS[:1] if opt.quick else V2_SETTINGS
    teachers = opt.teachers or ("none", "lenet")
    seeds = range(opt.seeds or (1 if opt.quick else 3))
    runs = []
    for ds in datasets:
        for q in qubit_counts:
            for student, reduction, encoding in settings:
                for teacher in teachers:
                    t_epochs = (opt.teacher_epochs or {}).get(teacher, 10)
                    tag = "" if teacher == "none" else f"-te{t_epochs}"
                    for seed in seeds:
                        cfg = DistillConfig()
                        cfg.data = DataConfig(dataset=ds, classes=None, data_dir=opt.data_dir)
                        cfg.student = StudentConfig(name=student, qubits=q,
                                                    reduction=reduction, encoding=encoding,
                                                    ansatz="hea", layers=4)
                        cfg.kd = KDConfig(teacher=teacher, teacher_epochs=t_epochs)
                        cfg.train = TrainConfig(epochs=opt.epochs or (2 if opt.quick else 10),
                                                batch_size=128, seed=seed, device=opt.device)
                        runs.append(Run(
                            f"{ds}_q{q}_{student}-{reduction}-{encoding}_{teacher}{tag}_s{seed}",
                            _v2_setting(ds, q, student, reduction, encoding), cfg))
    return runs


def _v2_paper_table() -> dict[str, dict[str, float]]:
    # The paper's v2 numbers are its KD students (FC + amplitude), read off its figure.
    return {_v2_setting(ds, q, "paper-v2", "fc", "amplitude"): {"lenet": acc}
            for (ds, q), acc in paper.V2_STUDENTS.items()}


GRIDS: dict[str, Callable[[GridOptions], list[Run]]] = {
    "paper-v1": paper_v1_grid, "paper-v2": paper_v2_grid,
    "kd-study": kd_study_grid,  # docs/kd-study.md (report: kd_figures.write_report)
}
PAPER_TABLES: dict[str, Callable[[], dict[str, dict[str, float]]]] = {
    "paper-v1": lambda: {_v1_setting(ds, c, q): v for (ds, c, q), v in
                         paper.V1_STUDENTS.items()},
    "paper-v2": _v2_paper_table,
}
