"""Your own student: ``qdistill distill --student my_student.py:MyStudent``.

``MyStudent`` is a :class:`~qdistill.students.Student` subclass (or a factory returning
one) in your file, built as ``MyStudent(num_classes, image_shape)`` (or ``MyStudent()``
when it takes no arguments; see :mod:`qdistill.user_code`, which also says how the file
is imported: **it runs your file**). Write its circuit with ``qdistill.quantum``
(``build_quantum_layer``, or ``QuantumLayer`` with any encoding, ansatz and
measurement) and it goes through everything a built-in student does::

    import math
    from qdistill.quantum import build_quantum_layer
    from qdistill.students import Student
    from torch import nn

    class MyStudent(Student):
        def __init__(self, num_classes, image_shape):
            super().__init__()
            self.num_classes, self.image_shape = num_classes, tuple(image_shape)
            self.class_outputs = list(range(num_classes))
            c, h, w = image_shape
            self.reduce = nn.Linear(c * h * w, 4)  # classical, trained
            self.circuit = build_quantum_layer(4, encoding="angle", ansatz="hardware_efficient",
                                               n_layers=2, measurement="expval")
            self.head = nn.Linear(4, num_classes)

        def circuit_input(self, x):
            return math.pi * self.reduce(x.flatten(1)).tanh()

        def logits_from_circuit(self, z):
            return self.head(z)

Then ``qdistill distill --student my_student.py:MyStudent ...`` trains it (with or
without a teacher), ``qdistill evaluate --run RUN --shots 1000 --noise
depolarizing=0.01`` runs its circuit under shots and noise, and ``qdistill export --run
RUN --test-index 0`` writes it as OpenQASM 3. ``--shots`` and ``--set student.noise=...``
apply to its measurements and circuit; the options of the built-in students
(``--head``, ``--ansatz``, ...) do not. The run records the file as an absolute path and
its content hash (``student_identity`` in ``best.json``): loading the run again rebuilds
the student from the file and refuses it if the file has changed since.

A circuit that is not made of ``qdistill.quantum`` ops (a PennyLane ``TorchLayer``, say)
trains and evaluates exactly, but cannot be exported or run under noise or shots.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import QdistillError
from ..quantum.noise import set_shots
from ..user_code import UserFactory, parse_py_spec, read_file
from .base import StudentKind, check_student


def is_user_spec(name: str) -> bool:
    """Whether ``name`` is ``FILE.py:NAME`` (a ``FILE.py`` without NAME is an error)."""
    return parse_py_spec(name, "--student") is not None


def absolute_spec(name: str) -> str:
    """``FILE.py:NAME`` with FILE made absolute (a run reloads it from anywhere)."""
    path, obj = parse_py_spec(name, "--student")  # type: ignore[misc]
    return f"{path.resolve()}:{obj}"


def identity(name: str) -> str | None:
    """``py:NAME@sha256:<hex of the file>`` for a user student, None for a built-in."""
    spec = parse_py_spec(name, "--student")
    if spec is None:
        return None
    path, obj = spec
    return f"py:{obj}@sha256:{hashlib.sha256(read_file(path, 'student file')).hexdigest()}"


def user_kind(name: str) -> StudentKind | None:
    """The kind of a ``FILE.py:NAME`` student: no options of its own, built from the
    file (imported once per call), checked against the contract."""
    spec = parse_py_spec(name, "--student")
    if spec is None:
        return None
    path, obj = spec

    def build(cfg: Any, num_classes: int, image_shape: tuple[int, int, int]) -> nn.Module:
        model = UserFactory(path, obj, what="student").build(num_classes, image_shape)
        check_student(model, num_classes, image_shape)
        if cfg.shots is not None and set_shots(model, cfg.shots) == 0:
            raise QdistillError(f"--shots {cfg.shots}: student {Path(path).name}:{obj} has no "
                                "qdistill measurement to sample (build its circuit from "
                                "qdistill.quantum)")
        return model

    return StudentKind(build, {}, trainable_circuit=False)
