"""Logit-standardised knowledge distillation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import DistillationLoss, labelled_ce


def zscore(logits: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Each row minus its mean, over its standard deviation (the population std)."""
    mean = logits.mean(1, keepdim=True)
    return (logits - mean) / (logits.std(1, keepdim=True, unbiased=False) + eps)


class StandardizedKD(DistillationLoss):
    """Logit standardisation (Sun, Ren, Li, Wang, Cao, "Logit Standardization in
    Knowledge Distillation", CVPR 2024, arXiv:2403.01427): teacher and student logits
    are z-scored per sample before the softened KL, so the student is asked to match
    the *shape* of the teacher's logits, not their range. This suits quantum students,
    whose logits have a fixed, small range (log(p + 0.01) >= -4.6; scale * <Z>)::

        L = (1 - alpha) * CE(s, y) + alpha * T^2 * KL(softmax(Z(t) / T) || softmax(Z(s) / T))

    with ``Z(x) = (x - mean(x)) / std(x)`` per row. The paper's base temperature is 2.
    """

    def combine(self, outputs: torch.Tensor, s_cls: torch.Tensor, labels: torch.Tensor,
                teacher: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        kl = F.kl_div(F.log_softmax(zscore(s_cls) / t, dim=1),
                      F.log_softmax(zscore(teacher) / t, dim=1),
                      reduction="batchmean", log_target=True)
        return (1 - self.alpha) * labelled_ce(outputs, labels) + self.alpha * t * t * kl
