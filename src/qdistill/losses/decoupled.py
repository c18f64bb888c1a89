"""Decoupled knowledge distillation (DKD)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import DistillationLoss, labelled_ce


class DecoupledKD(DistillationLoss):
    """Decoupled KD (Zhao, Cui, Song, Qiu, Liang, "Decoupled Knowledge Distillation",
    CVPR 2022, arXiv:2203.08679). The KL of Hinton's loss splits into a target-class
    term (TCKD: the binary distribution target vs. rest) and a non-target term (NCKD:
    the distribution among the other classes), weighted separately::

        L = (1 - alpha) * CE(s, y) + alpha * T^2 * (tckd * TCKD + beta * NCKD)

        TCKD = KL([p_t, 1 - p_t] || [q_t, 1 - q_t]),  p = softmax(t / T), q = softmax(s / T)
        NCKD = KL(softmax(t_{-y} / T) || softmax(s_{-y} / T))   (the target column removed)

    The paper's ImageNet setting is ``tckd = 1``, ``beta = 8`` with CE weight 1; here
    ``alpha`` keeps its meaning in qdistill (the weight of the teacher's term).
    """

    def __init__(self, temperature: float = 3.0, alpha: float = 0.9,
                 class_outputs: list[int] | None = None, beta: float = 8.0,
                 tckd: float = 1.0):
        super().__init__(temperature, alpha, class_outputs)
        self.beta, self.tckd = float(beta), float(tckd)

    def combine(self, outputs: torch.Tensor, s_cls: torch.Tensor, labels: torch.Tensor,
                teacher: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        target = F.one_hot(labels, s_cls.shape[1]).bool()
        p_t, p_s = F.softmax(teacher / t, dim=1), F.softmax(s_cls / t, dim=1)
        bt = torch.stack([p_t[target], 1 - p_t[target]], dim=1)
        bs = torch.stack([p_s[target], 1 - p_s[target]], dim=1)
        tckd = F.kl_div(bs.clamp_min(1e-12).log(), bt, reduction="batchmean")
        # Non-target logits: the target column pushed to -inf (removed from the softmax).
        mask = torch.where(target, float("-inf"), 0.0)
        log_q = F.log_softmax(s_cls / t + mask, dim=1)
        log_p = F.log_softmax(teacher / t + mask, dim=1)
        nckd = (log_p.exp() * (log_p - log_q)).masked_fill(target, 0.0).sum(1).mean()
        ce = labelled_ce(outputs, labels)
        return (1 - self.alpha) * ce + self.alpha * t * t * (self.tckd * tckd
                                                               + self.beta * nckd)
