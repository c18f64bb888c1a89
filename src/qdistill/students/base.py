"""The student contract: what training, evaluation, export and reports rely on.

A student is classical pre-processing -> a quantum circuit -> a classical head::

    forward(x) == logits_from_circuit(circuit(circuit_input(x)))

Every part of qdistill talks to a student through this class only (never through the
kind of student it is):

- training calls ``forward`` and ``fit_preprocessing`` (e.g. PCA on the training
  images), and takes accuracy and KD on the columns ``class_outputs``;
- evaluation under shots or noise changes the ``circuit``'s measurement and noise
  model (``quantum.noise.noisy``) and calls ``forward`` again;
- export runs ``circuit_input`` for one image, writes ``circuit.ops(row)`` as OpenQASM
  3 (or Qiskit / PennyLane), and describes the classical ends with ``export_info``;
- reports count ``parameter_split``: the circuit's parameters are quantum, the rest
  classical.

The ``circuit`` is a :class:`qdistill.quantum.QuantumLayer` (any encoding, ansatz and
measurement of ``qdistill.quantum``) or any module with the same four members:
``n_qubits``, ``measurement`` (a ``quantum.measure.Measurement``), ``ops(row) ->
list[Op]`` for one input row, ``gates(inputs)`` for a batch (what the noisy simulators
run; ``quantum.layer.trace_gates`` derives it from ``ops``), and a ``noise`` attribute
(``None``). A circuit without ``ops`` (e.g. a PennyLane ``TorchLayer``) trains and
evaluates exactly, but cannot be exported or run under noise.

Your own student: subclass :class:`Student` in a file of your own and name it with
``qdistill distill --student my_student.py:MyStudent`` (see ``students/user.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


class Student(nn.Module):
    """Base class of every student; subclasses set the attributes and the two halves.

    Attributes a subclass sets in ``__init__``: ``num_classes`` (K), ``image_shape``
    ``(C, H, W)``, ``class_outputs`` (the columns of ``forward``'s output that are the K
    class logits, usually ``list(range(K))``) and ``circuit`` (a submodule, or a
    property returning one).
    """

    num_classes: int
    image_shape: tuple[int, int, int]
    class_outputs: list[int]
    circuit: nn.Module

    def circuit_input(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)`` in [0, 1] -> what the circuit encodes ``(B, F)``."""
        raise NotImplementedError(f"{type(self).__name__} must define circuit_input")

    def logits_from_circuit(self, out: torch.Tensor) -> torch.Tensor:
        """The circuit's output ``(B, M)`` -> ``forward``'s output (class logits at
        ``class_outputs``)."""
        raise NotImplementedError(f"{type(self).__name__} must define logits_from_circuit")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_from_circuit(self.circuit(self.circuit_input(x)))

    def fit_preprocessing(self, images: torch.Tensor) -> None:
        """Fit any data-dependent pre-processing on the training images (float, (N, C,
        H, W)) before training; nothing by default."""

    def export_info(self) -> dict[str, Any]:
        """``{"preprocessing": {...}, "readout": {...}}``: what an exported circuit's
        JSON says about the classical parts (free text and numbers a user needs to run
        the circuit elsewhere and read its counts as this student does)."""
        return {
            "preprocessing": {"description": f"{type(self).__name__}.circuit_input"},
            "readout": {"kind": type(self.circuit.measurement).__name__,
                        "class_outputs": list(self.class_outputs),
                        "class_rule": f"{type(self).__name__}.logits_from_circuit"},
        }


def check_student(model: nn.Module, num_classes: int, image_shape: tuple[int, ...]) -> None:
    """Refuse, with one line naming what is missing, a module that does not meet the
    contract (used for students from a user's file)."""
    from ..errors import QdistillError

    name = type(model).__name__
    if not isinstance(model, Student):
        raise QdistillError(f"{name} is not a qdistill student: subclass "
                            "qdistill.students.Student (circuit_input, circuit, "
                            "logits_from_circuit, class_outputs)")
    for attr in ("circuit", "class_outputs"):
        if getattr(model, attr, None) is None:
            raise QdistillError(f"student {name} has no {attr!r} (see qdistill.students.Student)")
    if len(model.class_outputs) != num_classes:
        raise QdistillError(f"student {name} declares {len(model.class_outputs)} class outputs; "
                            f"the task has {num_classes} classes")
    with torch.no_grad():
        was = model.training
        model.eval()
        try:
            out = model(torch.rand(2, *image_shape))
        except Exception as exc:  # a user's module: any failure is a message, not a crash
            raise QdistillError(f"student {name} fails on a (2, {', '.join(map(str, image_shape))})"
                                f" batch of images: {type(exc).__name__}: {exc}") from None
        finally:
            model.train(was)
    if out.dim() != 2 or out.shape[0] != 2 or max(model.class_outputs) >= out.shape[1]:
        raise QdistillError(f"student {name} returns shape {tuple(out.shape)}; expected (B, M) "
                            f"with class_outputs {model.class_outputs} among its M columns")


def basis_readout(wires: list[int], class_outputs: list[int], head: str) -> dict[str, Any]:
    """Export text of a read-out that takes basis-state probabilities as class scores."""
    return {
        "kind": "basis_probabilities", "readout_qubits": wires,
        "class_outputs": class_outputs, "head": head,
        "outputs": "p_j = probability that the readout qubits read j (readout_qubits[0] = "
                   "most significant bit), summed over the other qubits",
        "class_rule": f"class i <- basis state |j>, j = class_outputs[i]; logits_i = "
                      f"{HEADS[head]}",
    }


HEADS = {"logprob": "log(p_j + 0.01)",
         "paper": "sigmoid(p_j) (the notebooks' head; CE also saw 1 - sigmoid(p_j))"}
IMAGE_TEXT = "float pixels in [0, 1] (uint8 / 255), shape (C, H, W)"


# Probability floor of the logprob heads: logits = log(p + 0.01). Without it,
# d log p / d theta is unbounded as a class state's p -> 0, and batch-1 training blew up:
# MNIST 0-5, 3 qubits, 3 epochs, test acc with floor 1e-10 / 1e-3 / 1e-2: no teacher
# 0.89 0.91 0.77 / 0.86 0.88 0.93 / 0.84 0.89 0.95; LeNet KD 0.13 0.16 0.17 (collapsed)
# / 0.75 0.92 0.93 / 0.85 0.90 0.93.
LOGPROB_FLOOR = 1e-2


def check_qubits(qubits: int, num_classes: int, what: str) -> None:
    """Refuse fewer qubits than a basis-state read-out of ``num_classes`` needs."""
    from ..errors import QdistillError

    need = max(1, math.ceil(math.log2(num_classes)))
    if qubits < need:
        raise QdistillError(
            f"{what}: {qubits} qubits give {2 ** qubits} basis states, fewer than the "
            f"{num_classes} classes; use at least {need} qubits")


def check_memory(qubits: int) -> None:
    """Refuse, before allocating, a circuit whose statevector cannot fit in memory."""
    from ..errors import QdistillError
    from ..quantum.memory import check_statevector_memory

    try:
        check_statevector_memory(qubits, 1)
    except ValueError as exc:
        raise QdistillError(str(exc)) from None


@dataclass(frozen=True)
class StudentKind:
    """One kind of student: how to build it, the options of its own (with defaults), and
    whether its circuit must have trainable parameters (paper-v1's has none, as in the
    paper; a fully quantum student with none would train nothing)."""

    build: Callable[[Any, int, tuple[int, int, int]], nn.Module]  # (StudentConfig, K, (C, H, W))
    options: dict[str, Any]
    trainable_circuit: bool
