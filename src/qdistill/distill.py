"""Knowledge distillation: the loss, and the frozen teacher's cached soft targets.

    loss_fn = KDLoss(temperature=3.0, alpha=0.9)          # Hinton et al. 2015
    soft = teacher_logits(teacher, teacher_meta, task.train)  # computed once, cached
    fit(student, task.train, task.val, task.test, cfg, loss_fn=loss_fn, soft_targets=soft)
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import checkpoint, distributed
from .data import cache_dir
from .errors import QdistillError, unknown_name
from .train import predict_logits, take_columns

KD_VARIANTS = ("hinton", "paper")


class KDLoss(nn.Module):
    """Hinton-style knowledge-distillation loss.

    ``hinton`` (default)::

        L = (1 - alpha) * CE(s, y) + alpha * T^2 * KL(softmax(t / T) || softmax(s / T))

    ``paper`` (the as-coded loss of arXiv:2311.13810's notebooks)::

        L = CE(s, y) + alpha * T^2 * KL(softmax(t / T) || softmax(s / T))

    with ``s`` the student's and ``t`` the teacher's class logits (both (B, K); a student
    with more outputs names its class columns in ``class_outputs``, and CE then runs over
    all its outputs, as the paper's notebooks did), KL
    averaged over the batch (``reduction="batchmean"``, the true KL per sample). The
    T^2 factor keeps the soft-target gradients on the scale of the hard-target ones
    when T changes (the soft gradients shrink as 1/T^2). Paper defaults: T = 3,
    alpha = 0.9.

    Reference: G. Hinton, O. Vinyals, J. Dean, "Distilling the Knowledge in a Neural
    Network", arXiv:1503.02531 (2015).
    """

    def __init__(self, temperature: float = 3.0, alpha: float = 0.9,
                 variant: str = "hinton", class_outputs: list[int] | None = None):
        super().__init__()
        if not (math.isfinite(temperature) and temperature > 0):
            raise QdistillError(f"KD temperature must be a positive number, got {temperature}")
        if not (math.isfinite(alpha) and 0.0 <= alpha <= 1.0):
            raise QdistillError(f"KD alpha must be in [0, 1], got {alpha}")
        if variant not in KD_VARIANTS:
            raise unknown_name("KD loss variant", variant, KD_VARIANTS)
        self.temperature, self.alpha, self.variant = temperature, alpha, variant
        # Which student outputs are the class logits matched to the teacher's, when the
        # student emits more (the paper-v1 notebook head); CE still sees all outputs.
        self.class_outputs = class_outputs

    def forward(self, student_logits: torch.Tensor, labels: torch.Tensor,
                teacher_logits: torch.Tensor | None) -> torch.Tensor:
        if teacher_logits is None:
            raise QdistillError("KDLoss needs the teacher's logits (soft targets)")
        s_cls = (student_logits if self.class_outputs is None
                 else take_columns(student_logits, self.class_outputs))
        if teacher_logits.shape != s_cls.shape:
            raise QdistillError(
                f"student class logits {tuple(s_cls.shape)} and teacher logits "
                f"{tuple(teacher_logits.shape)} differ: both must be (batch, classes); a "
                "student with more outputs than classes must name its class_outputs")
        t = self.temperature
        ce = F.cross_entropy(student_logits, labels)
        kl = F.kl_div(F.log_softmax(s_cls / t, dim=1),
                      F.log_softmax(teacher_logits / t, dim=1),
                      reduction="batchmean", log_target=True)
        hard = (1.0 - self.alpha) if self.variant == "hinton" else 1.0
        return hard * ce + self.alpha * t * t * kl

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, alpha={self.alpha}, variant={self.variant!r}"


def _logits_key(teacher_meta: dict[str, Any], images: torch.Tensor, preprocess: str) -> str:
    """Identity of a set of cached logits: teacher weights x exact images x preprocessing.

    Keyed on content only, never on a dataset name or a path: the teacher by the hash
    of its weights (a teacher trained on other data has other weights), the images by
    their bytes (0.7 MB for the paper's 900 student images; 47 MB for all of MNIST,
    ~0.05 s), so any change of data, subset, split or order invalidates the cache.
    """
    h = hashlib.sha256()
    h.update(json.dumps({"teacher": teacher_meta.get("weights_sha256"),
                         "preprocess": preprocess}, sort_keys=True).encode())
    h.update(f"{images.dtype} {tuple(images.shape)}".encode())
    h.update(images.cpu().contiguous().numpy())
    return h.hexdigest()[:24]


def teacher_logits(teacher: nn.Module, teacher_meta: dict[str, Any], images: torch.Tensor,
                   preprocess: str = "uint8/255", use_cache: bool = True) -> torch.Tensor:
    """The frozen teacher's logits on ``images``, computed once and cached on disk.

    The cache file is keyed by the teacher checkpoint's weights hash, the images
    themselves and the preprocessing name, so a different teacher, class subset or
    split never reuses stale targets. Distillation then costs no teacher forward pass
    per epoch.
    """
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    # A teacher without a weights hash has no identity to key on: never cached.
    use_cache = use_cache and bool(teacher_meta.get("weights_sha256"))
    key = _logits_key(teacher_meta, images, preprocess)
    path = cache_dir() / "teacher_logits" / key
    if use_cache and checkpoint.exists(path):
        tensors, _ = checkpoint.load(path, {"teacher": teacher_meta["weights_sha256"],
                                            "n": len(images)})
        return tensors["logits"]
    logits = predict_logits(teacher, images).cpu()
    if use_cache and distributed.is_main():
        checkpoint.save(path, {"logits": logits},
                        {"teacher": teacher_meta["weights_sha256"], "n": len(images),
                         "teacher_data_fingerprint": teacher_meta.get("data_fingerprint")})
    return logits
