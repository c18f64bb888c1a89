"""Hinton's loss plus a FitNets hint: the student's circuit input, through a learned
projection, regresses the teacher's penultimate features."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import QdistillError
from .hinton import HintonKD


class HintKD(HintonKD):
    """Hinton's KD and a hint term::

        L = (1 - alpha) * CE(s, y) + alpha * T^2 * KL(softmax(t / T) || softmax(s / T))
            + beta * mean_j (W z + b - f)_j^2

    with ``z`` the student's circuit input (what it encodes into the circuit: the
    classical front end's output), ``f`` the frozen teacher's penultimate features (the
    input of its last ``nn.Linear``, standardised per feature over the training images)
    and ``W, b`` a projection trained with the student (a parameter of the loss: the
    training loop optimises and checkpoints it). The regressor sits on the student's
    side as in FitNets, so the target is fixed and a zero projection is no way out.
    ``beta`` (``--loss-opt beta=...``, default 1) weighs the hint.

    The teacher's features travel with its logits: the soft targets of a hint run are
    ``(N, K + D)``, logits first (:func:`teacher_with_features`). The student's circuit
    input is read by a forward pre-hook on ``student.circuit`` (:meth:`attach`).

    Reference: A. Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015
    (arXiv:1412.6550).
    """

    needs_teacher_features = True

    def __init__(self, temperature: float = 3.0, alpha: float = 0.9,
                 class_outputs: list[int] | None = None, beta: float = 1.0):
        super().__init__(temperature, alpha, class_outputs)
        if not beta >= 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.beta = beta
        self.projection: nn.Linear | None = None
        self._z: torch.Tensor | None = None
        self._hook: torch.utils.hooks.RemovableHandle | None = None

    def attach(self, student: nn.Module, circuit_inputs: int, features: int) -> None:
        """Read the student's circuit input from now on, and make the projection
        ``circuit_inputs -> features`` (before the optimiser is built)."""
        self.detach()
        self._hook = student.circuit.register_forward_pre_hook(self._keep)
        self.projection = nn.Linear(circuit_inputs, features)

    def detach(self) -> None:
        """Stop reading the student's circuit input (after training: the student then
        holds no hook and no reference to its last batch)."""
        if self._hook is not None:
            self._hook.remove()
        self._hook, self._z = None, None

    def _keep(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        self._z = args[0]

    def forward(self, student_outputs: torch.Tensor, labels: torch.Tensor,
                teacher: torch.Tensor | None) -> torch.Tensor:
        if self.projection is None or teacher is None:
            raise QdistillError("the hint loss needs attach(student, ...) and the teacher's "
                                "logits and features (qdistill distill does both)")
        k = teacher.shape[1] - self.projection.out_features
        kd = super().forward(student_outputs, labels, teacher[:, :k])
        z = self._z.reshape(len(student_outputs), -1)
        hint = F.mse_loss(self.projection(z), teacher[:, k:])
        return kd + self.beta * hint

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, beta={self.beta}"


class _WithFeatures(nn.Module):
    """A teacher whose output is its logits followed by its penultimate features."""

    def __init__(self, teacher: nn.Module, last: nn.Linear):
        super().__init__()
        self.teacher = teacher
        self.features: torch.Tensor | None = None
        self._hook = last.register_forward_pre_hook(self._keep)

    def close(self) -> None:
        """Take the hook off the teacher (it may teach again, e.g. your own module)."""
        self._hook.remove()

    def _keep(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        self.features = args[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.teacher(x)
        assert self.features is not None
        return torch.cat([logits, self.features.reshape(len(x), -1)], dim=1)


def teacher_with_features(teacher: nn.Module) -> _WithFeatures:
    """``teacher`` answering ``(B, K + D)``: its logits, then the input of its last
    ``nn.Linear`` (its penultimate features); ``close()`` when done. A teacher without
    one (an ONNX file, a committed record) cannot give hints: a clear error."""
    last = [m for m in teacher.modules() if isinstance(m, nn.Linear)]
    if not last:
        raise QdistillError(f"the hint loss needs the teacher's penultimate features, the "
                            f"input of its last nn.Linear; {type(teacher).__name__} has no "
                            "nn.Linear (an ONNX teacher or a committed record gives logits "
                            "only)")
    return _WithFeatures(teacher, last[-1])


def standardize_features(soft: torch.Tensor, k: int) -> torch.Tensor:
    """Soft targets ``(N, K + D)`` with the D feature columns standardised over the N
    images (zero mean, unit variance per feature; constant features stay 0), so that
    ``beta`` means the same for any teacher's feature scale."""
    f = soft[:, k:]
    std = f.std(dim=0, keepdim=True)
    f = (f - f.mean(dim=0, keepdim=True)) / torch.where(std > 0, std, torch.ones_like(std))
    return torch.cat([soft[:, :k], f], dim=1)
