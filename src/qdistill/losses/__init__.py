"""Distillation losses: one table, :data:`LOSSES`, name -> loss class.

    loss = build_loss("hinton", temperature=3.0, alpha=0.9)
    qdistill distill --loss paper ...            # a run picks one by name (kd.variant)

Every loss is a :class:`DistillationLoss` (``losses/base.py``): an ``nn.Module`` the
training loop calls as ``loss(student_outputs, labels, teacher_logits)``.

Adding a loss is one new file plus one table entry: write ``losses/my_loss.py`` with a
``DistillationLoss`` subclass whose ``combine(outputs, s_cls, labels, teacher)`` returns
the loss (formula and citation in its docstring), then add ``"my-loss": MyLoss`` to
``LOSSES`` below. ``--loss my-loss`` then works everywhere (distill, sweeps, YAML).
"""

from __future__ import annotations

from ..errors import unknown_name
from .base import DistillationLoss
from .hinton import HintonKD, PaperKD

LOSSES: dict[str, type[DistillationLoss]] = {
    "hinton": HintonKD,  # (1 - alpha) CE + alpha T^2 KL (Hinton et al. 2015; default)
    "paper": PaperKD,  # CE + alpha T^2 KL (the paper's notebooks)
}

__all__ = ["LOSSES", "DistillationLoss", "HintonKD", "KDLoss", "PaperKD", "build_loss"]


def build_loss(name: str, temperature: float = 3.0, alpha: float = 0.9,
               class_outputs: list[int] | None = None) -> DistillationLoss:
    """The loss ``name`` of :data:`LOSSES` (an unknown name lists the valid ones)."""
    if name not in LOSSES:
        raise unknown_name("KD loss", name, LOSSES)
    return LOSSES[name](temperature, alpha, class_outputs)


def KDLoss(temperature: float = 3.0, alpha: float = 0.9, variant: str = "hinton",
           class_outputs: list[int] | None = None) -> DistillationLoss:
    """The distillation loss ``variant`` (a name in :data:`qdistill.losses.LOSSES`:
    ``hinton`` = (1 - alpha) CE + alpha T^2 KL, ``paper`` = CE + alpha T^2 KL); see
    :mod:`qdistill.losses` for the formulas and how to add one."""
    return build_loss(variant, temperature, alpha, class_outputs)
