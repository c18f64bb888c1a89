"""Amplitude damping (energy relaxation, T1) after every gate, on each of its wires."""

from __future__ import annotations

import math

import torch

from .base import Channel


class AmplitudeDamping(Channel):
    """``|1>`` decays to ``|0>`` with probability ``gamma = rate``. Kraus:
    ``K_0 = diag(1, sqrt(1 - gamma))``, ``K_1 = sqrt(gamma) |0><1|``; on a 2-qubit gate,
    independently on each wire. A gate of length ``t`` on a qubit with relaxation time
    ``T1`` has ``gamma = 1 - exp(-t / T1)``.

    PennyLane: ``qml.AmplitudeDamping(gamma)`` on each wire. Qiskit Aer:
    ``amplitude_damping_error(gamma)`` (its ``excited_state_population = 0`` default).
    """

    key = "damping"
    wires = "each"

    def kraus(self, rate, dtype=torch.complex128, device=None):
        return [torch.tensor([[1, 0], [0, math.sqrt(1 - rate)]], dtype=dtype, device=device),
                torch.tensor([[0, math.sqrt(rate)], [0, 0]], dtype=dtype, device=device)]
