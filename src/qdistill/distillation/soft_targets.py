"""The frozen teacher's soft targets: its logits on the student's training images,
computed once and cached by content (the teacher's weights hash and the images' bytes).

    soft = teacher_logits(teacher, teacher_meta, task.train.images)
    fit(student, task.train, task.val, task.test, cfg, loss_fn=KDLoss(3.0, 0.9),
        soft_targets=soft)                                  # KDLoss: qdistill.losses
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch
from torch import nn

from ..data import cache_dir
from ..training import checkpoint, distributed
from ..training.evaluation import predict_logits


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
