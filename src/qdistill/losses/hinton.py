"""Hinton et al.'s distillation loss, and the paper's as-coded variant of it."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import DistillationLoss, labelled_ce


class HintonKD(DistillationLoss):
    """Hinton-style knowledge distillation::

        L = (1 - alpha) * CE(s, y) + alpha * T^2 * KL(softmax(t / T) || softmax(s / T))

    with ``s`` the student's and ``t`` the teacher's class logits, KL averaged over the
    batch (``reduction="batchmean"``, the true KL per sample) and CE over all the
    student's outputs (as the paper's notebooks did). The T^2 factor keeps the
    soft-target gradients on the scale of the hard-target ones when T changes (they
    shrink as 1/T^2). Paper defaults: T = 3, alpha = 0.9.

    Reference: G. Hinton, O. Vinyals, J. Dean, "Distilling the Knowledge in a Neural
    Network", arXiv:1503.02531 (2015).
    """

    hard_weight_is_one = False  # PaperKD: CE is not scaled by (1 - alpha)

    def combine(self, outputs: torch.Tensor, s_cls: torch.Tensor, labels: torch.Tensor,
                teacher: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        ce = labelled_ce(outputs, labels)
        kl = F.kl_div(F.log_softmax(s_cls / t, dim=1), F.log_softmax(teacher / t, dim=1),
                      reduction="batchmean", log_target=True)
        hard = 1.0 if self.hard_weight_is_one else 1.0 - self.alpha
        return hard * ce + self.alpha * t * t * kl


class PaperKD(HintonKD):
    """The as-coded loss of arXiv:2311.13810's notebooks::

        L = CE(s, y) + alpha * T^2 * KL(softmax(t / T) || softmax(s / T))

    (the CE term keeps weight 1; otherwise as :class:`HintonKD`).
    """

    hard_weight_is_one = True
