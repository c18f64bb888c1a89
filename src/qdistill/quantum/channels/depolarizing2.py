"""Two-qubit depolarizing noise after every 2-qubit gate."""

from __future__ import annotations

import math

import torch

from .base import Channel, pauli_words


class Depolarizing2(Channel):
    """``rho -> (1 - p) rho + p/15 sum_P P rho P`` over the 15 non-identity two-qubit
    Pauli words ``P``, ``p = rate``, on both wires of the gate together. Kraus:
    ``sqrt(1 - p) II`` and ``sqrt(p/15) P``.

    PennyLane has no named two-qubit depolarizing channel: ``qml.QubitChannel`` with these
    16 matrices. Qiskit Aer: ``depolarizing_error(16p/15, 2)`` (``lam = p d^2/(d^2 - 1)``,
    ``d = 4``). Average gate infidelity ``r = 4p/5``, so ``p = 5r/4``.
    """

    key = "depolarizing2"
    wires = 2

    def kraus(self, rate, dtype=torch.complex128, device=None):
        w = [math.sqrt(1 - rate)] + [math.sqrt(rate / 15)] * 15
        return [c * m for c, m in zip(w, pauli_words(2, dtype, device), strict=True)]
