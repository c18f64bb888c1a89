"""Distillation losses: one table, :data:`LOSSES`, name -> loss class.

    loss = build_loss("hinton", temperature=3.0, alpha=0.9)
    qdistill distill --loss paper ...            # a run picks one by name (kd.variant)

Every loss is a :class:`DistillationLoss` (``losses/base.py``): an ``nn.Module`` the
training loop calls as ``loss(student_outputs, labels, teacher_logits)``.

Adding a loss is one new file plus one table entry: write ``losses/my_loss.py`` with a
``DistillationLoss`` subclass whose ``combine(outputs, s_cls, labels, teacher)`` returns
the loss (formula and citation in its docstring), then add ``"my-loss": MyLoss`` to
``LOSSES`` below. ``--loss my-loss`` then works everywhere (distill, sweeps, YAML).
Keyword arguments of its ``__init__`` beyond ``temperature, alpha, class_outputs`` are
its options (``--loss-opt key=value``, ``kd.options`` in YAML). A loss with parameters
(``learned-scale``) is trained with the student: the training loop optimises them with
the student's and keeps them in the run's checkpoints.
"""

from __future__ import annotations

import inspect

from ..errors import ConfigError, unknown_name
from .base import DistillationLoss
from .decoupled import DecoupledKD
from .hint import HintKD
from .hinton import HintonKD, PaperKD
from .learned_scale import LearnedScaleKD
from .pseudo_labels import PseudoLabels
from .standardized import StandardizedKD

LOSSES: dict[str, type[DistillationLoss]] = {
    "hinton": HintonKD,  # (1 - alpha) CE + alpha T^2 KL (Hinton et al. 2015; default)
    "paper": PaperKD,  # CE + alpha T^2 KL (the paper's notebooks)
    "dkd": DecoupledKD,  # target / non-target KL weighted apart (Zhao et al. 2022)
    "lskd": StandardizedKD,  # z-scored logits in the KL (Sun et al. 2024)
    "learned-scale": LearnedScaleKD,  # a trained student-side logit scale in the KL
    "pseudo": PseudoLabels,  # CE on the teacher's argmax: the control arm
    "hint": HintKD,  # Hinton + the circuit input regressing the teacher's features (FitNets)
}

__all__ = ["LOSSES", "DecoupledKD", "DistillationLoss", "HintKD", "HintonKD", "KDLoss",
           "LearnedScaleKD", "PaperKD", "PseudoLabels", "StandardizedKD", "build_loss"]


def build_loss(name: str, temperature: float = 3.0, alpha: float = 0.9,
               class_outputs: list[int] | None = None,
               options: dict[str, float] | None = None) -> DistillationLoss:
    """The loss ``name`` of :data:`LOSSES` (an unknown name lists the valid ones), with
    its own ``options`` (``--loss-opt key=value``: e.g. ``beta`` of ``dkd``; an option
    the loss does not take is an error listing those it does)."""
    if name not in LOSSES:
        raise unknown_name("KD loss", name, LOSSES)
    cls = LOSSES[name]
    takes = [p for p in inspect.signature(cls.__init__).parameters
             if p not in ("self", "temperature", "alpha", "class_outputs")]
    unknown = sorted(set(options or {}) - set(takes))
    if unknown:
        raise ConfigError(f"--loss-opt {', '.join(unknown)}: not an option of the {name!r} "
                          f"loss; it takes: {', '.join(takes) or 'none'}",
                          key="kd.options")
    try:
        return cls(temperature, alpha, class_outputs, **(options or {}))
    except ValueError as exc:
        raise ConfigError(f"--loss-opt for {name!r}: {exc}", key="kd.options") from None


def KDLoss(temperature: float = 3.0, alpha: float = 0.9, variant: str = "hinton",
           class_outputs: list[int] | None = None,
           options: dict[str, float] | None = None) -> DistillationLoss:
    """The distillation loss ``variant`` (a name in :data:`qdistill.losses.LOSSES`:
    ``hinton`` = (1 - alpha) CE + alpha T^2 KL, ``paper`` = CE + alpha T^2 KL, ...); see
    :mod:`qdistill.losses` for the formulas and how to add one."""
    return build_loss(variant, temperature, alpha, class_outputs, options)
