"""Hard pseudo-labels from the teacher: the control for soft-target distillation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import DistillationLoss, labelled_ce


class PseudoLabels(DistillationLoss):
    """The teacher's argmax as a hard label, the control arm of a distillation study
    (does the teacher's *distribution* add anything over its decisions?)::

        L = (1 - alpha) * CE(s, y) + alpha * CE(s, argmax t)

    ``T`` plays no part (an argmax does not depend on it). On an unlabelled transfer
    set (labels hidden) use ``alpha = 1``.
    """

    def combine(self, outputs: torch.Tensor, s_cls: torch.Tensor, labels: torch.Tensor,
                teacher: torch.Tensor) -> torch.Tensor:
        pseudo = teacher.argmax(1)
        hard = labelled_ce(outputs, labels) if self.alpha < 1 else outputs.new_zeros(())
        return (1 - self.alpha) * hard + self.alpha * F.cross_entropy(outputs, pseudo)
