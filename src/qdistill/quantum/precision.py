"""Circuits run in full precision, also inside ``torch.autocast``.

Mixed precision helps the classical layers around a circuit, not the circuit: a
bfloat16 angle has 8 significant bits (RY(x) off by ~0.4 % of x), and autocast turns
real matmuls (gate fusion, <Z> readout) into bfloat16 ones, so a student's circuit
output moved by ~3e-3 under ``torch.autocast("cpu", torch.bfloat16)``, and the
paper-v1 circuit failed outright (``torch.complex`` takes no bfloat16). The rule of
this package is that a statevector is never stored below complex64, and every number
feeding it is at least float32. :func:`full_precision` wraps a circuit's ``forward``:
half/bfloat16 inputs are cast up to float32 and autocast is off inside; the output is
float32 (the next classical layer casts it down again if autocast says so).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import torch

__all__ = ["full_precision"]

F = TypeVar("F", bound=Callable[..., Any])
_LOW = (torch.float16, torch.bfloat16)


def full_precision(forward: F) -> F:
    """Decorate ``forward(self, x, ...)`` of a circuit module (see the module docstring)."""

    @functools.wraps(forward)
    def wrapper(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if x.dtype in _LOW:
            x = x.float()
        kind = x.device.type
        if kind in ("cpu", "cuda") and torch.is_autocast_enabled(kind):
            with torch.autocast(kind, enabled=False):
                return forward(self, x, *args, **kwargs)
        return forward(self, x, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
