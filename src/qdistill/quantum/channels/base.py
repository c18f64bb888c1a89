"""The contract every noise channel follows (see the package docstring for the recipe)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch

__all__ = ["Channel", "pauli_words"]

_PAULI = [[[1, 0], [0, 1]], [[0, 1], [1, 0]], [[0, -1j], [1j, 0]], [[1, 0], [0, -1]]]


class Channel:
    """A noise channel applied after gates, described by its Kraus matrices alone.

    Subclasses set two class attributes and one method:

    - ``key``: the name in spec strings and on :class:`~..noise_model.NoiseModel`
      (``NoiseModel.parse("key=rate")``, ``noise.key``). Not ``readout``: that name is
      the measurement-side bit-flip rate.
    - ``wires``: where it acts. ``1``: after every 1-qubit gate, on its wire; ``2``:
      after every 2-qubit gate, on both wires together; ``"each"``: after every gate,
      independently on each of its wires.
    - ``kraus(rate, dtype, device)``: the Kraus matrices ``K_0, K_1, ...`` for one rate
      in ``[0, 1]`` (``2 x 2`` for ``wires`` 1 or ``"each"``, ``4 x 4`` for 2, wire 0 the
      most significant bit). They must be trace preserving, ``sum_k K_k^+ K_k = I``, and
      ``K_0`` is the "no error" operator: a trajectory lays ``K_1, ..., K_{m-1}, K_0``
      out along ``[0, 1)`` in that order and picks the one its uniform draw falls in.

    Both simulators read only this: the density-matrix one applies
    ``sum_k K_k rho K_k^+``; the trajectory one makes a quantum jump, ``K_k psi /
    sqrt(q_k)`` with probability ``q_k = ||K_k psi||^2`` (constant probabilities and no
    state-dependent work when every ``K_k^+ K_k`` is a multiple of ``I``).
    """

    key: ClassVar[str]
    wires: ClassVar[int | str]

    def kraus(self, rate: float, dtype: torch.dtype = torch.complex128,
              device: torch.device | str | None = None) -> list[torch.Tensor]:
        raise NotImplementedError

    def targets(self, wires: Sequence[int]) -> list[tuple[int, ...]]:
        """The wire groups this channel acts on after a gate on ``wires`` (none, the
        gate's wires together, or each wire alone, in order)."""
        if self.wires == "each":
            return [(w,) for w in wires]
        return [tuple(wires)] if len(wires) == self.wires else []

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key={self.key!r}, wires={self.wires!r})"


def pauli_words(k: int, dtype: torch.dtype, device: torch.device | str | None = None
                ) -> torch.Tensor:
    """All ``4**k`` Pauli words on ``k`` (1 or 2) wires ``(4**k, 2**k, 2**k)``, identity
    first, then ``X, Y, Z`` (two wires: ``II, IX, IY, IZ, XI, ...``)."""
    p = torch.tensor(_PAULI, dtype=dtype, device=device)
    if k == 1:
        return p
    return (p[:, None, :, None, :, None] * p[None, :, None, :, None, :]).reshape(16, 4, 4)
