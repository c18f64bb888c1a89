"""Hinton's loss with a learnable student-side logit scale."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import DistillationLoss, labelled_ce


class LearnedScaleKD(DistillationLoss):
    """Hinton's KD with the student's class logits multiplied by a learnable scale
    ``exp(log_scale)`` inside the KL term only::

        L = (1 - alpha) * CE(s, y) + alpha * T^2 * KL(softmax(t / T) || softmax(e^g s / T))

    ``g`` (``log_scale``, initialised to ``log(init_scale)``) is trained with the student
    (it is a parameter of the loss; the training loop optimises and checkpoints it). A
    student whose logits live in a small fixed range (a quantum read-out) can then reach
    the teacher's softened distribution by a scale instead of by saturating its circuit
    (the paper-v1 collapse). Prediction is unaffected: a positive scale keeps the argmax.
    Related to learning the temperature (e.g. Li et al., "Curriculum Temperature for
    Knowledge Distillation", AAAI 2023), here on the student's side only.
    """

    def __init__(self, temperature: float = 3.0, alpha: float = 0.9,
                 class_outputs: list[int] | None = None, init_scale: float = 1.0):
        super().__init__(temperature, alpha, class_outputs)
        if not init_scale > 0:
            raise ValueError(f"init_scale must be > 0, got {init_scale}")
        self.log_scale = nn.Parameter(torch.tensor(float(init_scale)).log())

    def combine(self, outputs: torch.Tensor, s_cls: torch.Tensor, labels: torch.Tensor,
                teacher: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        scaled = s_cls * self.log_scale.exp()
        kl = F.kl_div(F.log_softmax(scaled / t, dim=1), F.log_softmax(teacher / t, dim=1),
                      reduction="batchmean", log_target=True)
        return (1 - self.alpha) * labelled_ce(outputs, labels) + self.alpha * t * t * kl
