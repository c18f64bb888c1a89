"""Evaluating a model: its logits on a set of images (batched, eval mode), the class
logits among its outputs, and accuracy, refusing non-finite outputs."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from ..errors import QdistillError


def as_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float in [0, 1] (the paper's ToTensor); floats pass through."""
    return images.float() / 255 if images.dtype == torch.uint8 else images.float()


def class_logits(model: nn.Module, outputs: torch.Tensor) -> torch.Tensor:
    """The class logits among a model's outputs: ``outputs[:, model.class_outputs]`` when
    the model declares more outputs than classes (the paper-v1 student's notebook head
    has 2^(n+1)), else ``outputs`` unchanged. Accuracy is always taken on these."""
    cols = getattr(model, "class_outputs", None)
    if cols is None or outputs.shape[1] == len(cols):
        return outputs
    return take_columns(outputs, cols)


def take_columns(t: torch.Tensor, cols: list[int]) -> torch.Tensor:
    """``t[:, cols]``. Columns ``0..K-1`` (every built-in student) are taken as a slice:
    indexing a CUDA tensor with a Python list copies the list to the GPU first, and a
    copy from pageable host memory waits for the GPU (a sync per training step)."""
    if list(cols) == list(range(len(cols))):
        return t[:, :len(cols)]
    return t[:, cols]


@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int = 1024,
                   device: torch.device | None = None) -> torch.Tensor:
    """Logits for all ``images`` (uint8 or float), in eval mode, on ``device``."""
    # the model's own device (a table-like teacher may hold buffers only; none: CPU)
    held = next(itertools.chain(model.parameters(), model.buffers()), None)
    device = device or (held.device if held is not None else torch.device("cpu"))
    was_training = model.training
    model.eval()
    outs = [model(as_float(images[i:i + batch_size].to(device)))
            for i in range(0, len(images), batch_size)]
    model.train(was_training)
    if not outs:
        return torch.empty(0, 0, device=device)
    return torch.cat(outs)


class NonFiniteOutputs(QdistillError):
    """A model gave non-finite (NaN or inf) outputs on evaluation images (see
    :func:`evaluate`)."""


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
             batch_size: int = 1024) -> float:
    """Accuracy in [0, 1] (NaN for an empty set)."""
    if len(labels) == 0:
        return float("nan")
    logits = class_logits(model, predict_logits(model, images, batch_size))
    # One host read per evaluation (not per batch): NaN or +-inf logits would give an
    # argmax and an accuracy that mean nothing (an overflow gives NaN or inf depending
    # on the CPU's kernels, so both are refused). On a GPU this is also where a zero-norm
    # amplitude-encoded sample shows up (encodings.refuse_zero_norm checks on CPU only).
    if not bool(torch.isfinite(logits).all()):
        raise NonFiniteOutputs(f"{type(model).__name__} gave non-finite (NaN or inf) "
                               "outputs on the evaluation images: a non-finite weight, "
                               "or an all-zero sample under amplitude encoding")
    return (logits.argmax(1).cpu() == labels.cpu()).float().mean().item()
