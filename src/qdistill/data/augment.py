"""Augmented views of images: small random shifts and rotations, seeded.

    views = augmented_views(task.train.images, k=4, seed=0)   # 4 views per image

The transfer set ``--transfer augmented:K`` is K such views of every labelled image,
with labels hidden: the teacher labels each view softly (its logits cached per view,
since the cache is keyed on the images' bytes) and the student learns from them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MAX_SHIFT = 2  # pixels, each axis (MNIST digits sit in a 20x20 box of a 28x28 image)
MAX_DEGREES = 10.0  # rotation, either way


def augmented_views(images: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """``k`` views of each of ``images`` (N, C, H, W), uint8 or float in [0, 1], in the
    order image 0 view 0..k-1, image 1 ...: each rotated by up to ``MAX_DEGREES`` and
    shifted by up to ``MAX_SHIFT`` pixels (zero fill), bilinear; same dtype back (uint8
    rounded). Same seed, same views."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    g = torch.Generator().manual_seed(seed)
    n, _, h, w = images.shape
    x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    x = x.repeat_interleave(k, dim=0)
    angle = (torch.rand(n * k, generator=g, dtype=torch.float64) * 2 - 1) \
        * math.radians(MAX_DEGREES)
    shift = torch.randint(-MAX_SHIFT, MAX_SHIFT + 1, (n * k, 2), generator=g)
    cos, sin = angle.cos(), angle.sin()
    # affine_grid works in [-1, 1] coordinates: a shift of s pixels is 2 s / size.
    theta = torch.stack([
        torch.stack([cos, -sin, -2 * shift[:, 0] / w], 1),
        torch.stack([sin, cos, -2 * shift[:, 1] / h], 1)], 1).float()
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros",
                        align_corners=False).clamp_(0, 1)
    return (out * 255).round().to(torch.uint8) if images.dtype == torch.uint8 else out
