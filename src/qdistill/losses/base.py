"""What every distillation loss is: an ``nn.Module`` called as the training loop calls a
loss, ``loss(student_outputs, labels, teacher_logits) -> scalar``.

The loop hands it the student's whole output ``(B, M)`` (the paper-v1 notebook head has
M = 2^(n+1) > K columns), the labels ``(B,)`` and the frozen teacher's logits ``(B, K)``
for the same images. :meth:`DistillationLoss.forward` takes the student's K class
columns (``class_outputs``), checks the shapes, and hands both to :meth:`combine`,
which is all a new loss writes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import QdistillError


class DistillationLoss(nn.Module):
    """Base class: ``temperature`` T > 0, ``alpha`` in [0, 1] (the weight of the
    teacher's term; note torchdistill's alpha weights the CE term instead), and the
    student's ``class_outputs`` (None: all its outputs are class logits)."""

    def __init__(self, temperature: float = 3.0, alpha: float = 0.9,
                 class_outputs: list[int] | None = None):
        super().__init__()
        if not (math.isfinite(temperature) and temperature > 0):
            raise QdistillError(f"KD temperature must be a positive number, got {temperature}")
        if not (math.isfinite(alpha) and 0.0 <= alpha <= 1.0):
            raise QdistillError(f"KD alpha must be in [0, 1], got {alpha}")
        self.temperature, self.alpha = temperature, alpha
        # Which student outputs are the class logits matched to the teacher's, when the
        # student emits more (the paper-v1 notebook head); CE still sees all outputs.
        self.class_outputs = class_outputs

    def forward(self, student_outputs: torch.Tensor, labels: torch.Tensor,
                teacher_logits: torch.Tensor | None) -> torch.Tensor:
        if teacher_logits is None:
            raise QdistillError(f"{type(self).__name__} needs the teacher's logits "
                                "(soft targets)")
        s_cls = student_outputs if self.class_outputs is None else _columns(
            student_outputs, self.class_outputs)
        if teacher_logits.shape != s_cls.shape:
            raise QdistillError(
                f"student class logits {tuple(s_cls.shape)} and teacher logits "
                f"{tuple(teacher_logits.shape)} differ: both must be (batch, classes); a "
                "student with more outputs than classes must name its class_outputs")
        return self.combine(student_outputs, s_cls, labels, teacher_logits)

    def combine(self, outputs: torch.Tensor, s_cls: torch.Tensor, labels: torch.Tensor,
                teacher: torch.Tensor) -> torch.Tensor:
        """The loss from the student's whole ``outputs`` (B, M), its class logits
        ``s_cls`` (B, K), the ``labels`` and the teacher's logits (B, K). A label of -1
        is hidden (a transfer set): use :func:`labelled_ce` for the hard term."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, alpha={self.alpha}"


UNLABELLED = -1  # qdistill.data.tasks.UNLABELLED: the label of a transfer-set image


def labelled_ce(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the rows whose label is known (>= 0), averaged over the whole
    batch: rows of a transfer set (label -1) add nothing, and a batch of them gives 0
    (not NaN, as ``F.cross_entropy(ignore_index=-1)`` would)."""
    # sum / N is the same arithmetic as reduction="mean" (sum, then / N): a batch
    # without hidden labels gives exactly what F.cross_entropy gives.
    return F.cross_entropy(outputs, labels, ignore_index=UNLABELLED, reduction="sum") \
        / len(labels)


def _columns(t: torch.Tensor, cols: list[int]) -> torch.Tensor:
    """``t[:, cols]``; ``0..K-1`` as a slice (a list index is a host->GPU copy per step)."""
    if list(cols) == list(range(len(cols))):
        return t[:, :len(cols)]
    return t[:, cols]
