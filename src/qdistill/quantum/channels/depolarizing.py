"""One-qubit depolarizing noise after every 1-qubit gate."""

from __future__ import annotations

import math

import torch

from .base import Channel, pauli_words


class Depolarizing(Channel):
    """``rho -> (1 - p) rho + p/3 (X rho X + Y rho Y + Z rho Z)``, ``p = rate`` the
    probability of a Pauli error. Kraus: ``sqrt(1 - p) I, sqrt(p/3) X, sqrt(p/3) Y,
    sqrt(p/3) Z``.

    PennyLane: ``qml.DepolarizingChannel(p)``. Qiskit Aer: ``depolarizing_error(4p/3, 1)``
    (Qiskit writes it ``(1 - lam) rho + lam I/2``; ``lam = p d^2/(d^2 - 1)``, ``d = 2``).
    Average gate infidelity ``r = 2p/3``, so ``p = 3r/2`` from randomized benchmarking.
    """

    key = "depolarizing"
    wires = 1

    def kraus(self, rate, dtype=torch.complex128, device=None):
        w = [math.sqrt(1 - rate)] + [math.sqrt(rate / 3)] * 3
        return [c * m for c, m in zip(w, pauli_words(1, dtype, device), strict=True)]
