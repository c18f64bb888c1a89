"""Quantum convolutional neural network (Cong, Choi & Lukin 2019; Hur, Kim & Park 2022).

Each level acts on the list of *active* wires ``A`` (initially all wires):

1. Convolution: a 2-qubit block on neighbouring active pairs in a brick pattern, first
   ``(A0, A1), (A2, A3), ...`` then ``(A1, A2), (A3, A4), ...``. Block on ``(a, b)``, 6
   angles, in time order: ``RX(t0) a, RX(t1) b, RY(t2) a, RY(t3) b, CNOT(a, b),
   RY(t4) a, RY(t5) b, CNOT(b, a)``.
2. Pooling: for pairs ``(A_{2j}, A_{2j+1})`` the odd wire ``d`` is discarded and the even
   wire ``k`` kept, with 2 angles: ``CRZ(p0)[d -> k], X(d), CRX(p1)[d -> k], X(d)``, i.e.
   ``k`` gets ``RZ(p0)`` if ``d`` is 1 and ``RX(p1)`` if ``d`` is 0 (the measurement of
   ``d`` is deferred: it is never read again). Active wires become ``A[0::2]``.

Levels repeat until ``n_readout`` wires remain (the last level pools only as many pairs
as needed). Angles are shared by all blocks of a level (translation invariance), so a
level has 8 parameters. Each block is composed into one ``4 x 4`` matrix per forward and
applied with one GEMM.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .ansatz import Ansatz
from .gates import Op, rx_matrix, ry_matrix, rz_matrix
from .state import apply_matrix

__all__ = ["QCNN"]

CONV_PARAMS = 6
POOL_PARAMS = 2


def _kron2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a[:, None, :, None] * b[None, :, None, :]).reshape(4, 4)


def _swap_rows(m: torch.Tensor, i: int, j: int) -> torch.Tensor:
    order = list(range(4))
    order[i], order[j] = j, i
    return m[order]


class QCNN(Ansatz):
    """Convolution + pooling levels down to ``n_readout`` wires (see module docstring).

    Attributes:
        readout_wires: the wires left active at the end; measure these.
        levels: per level, ``(conv_pairs, pool_pairs)`` with pool pairs as
            ``(discarded, kept)``.
    """

    def __init__(self, n_qubits: int, n_readout: int = 1) -> None:
        super().__init__()
        if not 1 <= n_readout <= n_qubits:
            raise ValueError(f"n_readout must be in [1, {n_qubits}], got {n_readout}")
        self.n_qubits, self.n_readout = int(n_qubits), int(n_readout)
        active = list(range(self.n_qubits))
        self.levels: list[tuple[list[tuple[int, int]], list[tuple[int, int]]]] = []
        while len(active) > self.n_readout:
            m = len(active)
            conv = [(active[i], active[i + 1]) for i in range(0, m - 1, 2)]
            conv += [(active[i], active[i + 1]) for i in range(1, m - 1, 2)]
            n_pool = min(m // 2, m - self.n_readout)
            pool = [(active[2 * j + 1], active[2 * j]) for j in range(n_pool)]
            self.levels.append((conv, pool))
            dropped = {d for d, _ in pool}
            active = [w for w in active if w not in dropped]
        self.readout_wires = active
        n_levels = len(self.levels)
        self.conv_weights = nn.Parameter(torch.rand(n_levels, CONV_PARAMS) * 2 * math.pi)
        self.pool_weights = nn.Parameter(torch.rand(n_levels, POOL_PARAMS) * 2 * math.pi)

    def conv_matrix(self, t: torch.Tensor, cdt: torch.dtype) -> torch.Tensor:
        """The 4x4 convolution block for angles ``t`` (6,), first wire most significant."""
        first = _kron2(ry_matrix(t[2]) @ rx_matrix(t[0]), ry_matrix(t[3]) @ rx_matrix(t[1]))
        second = _kron2(ry_matrix(t[4]), ry_matrix(t[5]))
        m = _swap_rows(first.to(cdt), 2, 3)            # CNOT(a, b) after the rotations
        m = _swap_rows(second.to(cdt) @ m, 1, 3)       # RY RY, then CNOT(b, a)
        return m

    def pool_matrix(self, p: torch.Tensor, cdt: torch.dtype) -> torch.Tensor:
        """``blockdiag(RX(p1), RZ(p0))`` on (discarded, kept)."""
        out = torch.zeros(4, 4, dtype=cdt, device=p.device)
        out[:2, :2] = rx_matrix(p[1]).to(cdt)
        out[2:, 2:] = rz_matrix(p[0]).to(cdt)
        return out

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        self._check(state)
        real, cdt = state.real.dtype, state.dtype
        cw, pw = self.conv_weights.to(real), self.pool_weights.to(real)
        for lev, (conv, pool) in enumerate(self.levels):
            cm = self.conv_matrix(cw[lev], cdt)
            for a, b in conv:
                state = apply_matrix(state, cm, [a, b])
            pm = self.pool_matrix(pw[lev], cdt)
            for d, k in pool:
                state = apply_matrix(state, pm, [d, k])
        return state

    def ops(self) -> list[Op]:
        cw = self.conv_weights.detach().cpu().tolist()
        pw = self.pool_weights.detach().cpu().tolist()
        out: list[Op] = []
        for lev, (conv, pool) in enumerate(self.levels):
            t = cw[lev]
            for a, b in conv:
                out += [Op("rx", (a,), t[0]), Op("rx", (b,), t[1]), Op("ry", (a,), t[2]),
                        Op("ry", (b,), t[3]), Op("cx", (a, b)), Op("ry", (a,), t[4]),
                        Op("ry", (b,), t[5]), Op("cx", (b, a))]
            p = pw[lev]
            for d, k in pool:
                out += [Op("crz", (d, k), p[0]), Op("x", (d,)), Op("crx", (d, k), p[1]),
                        Op("x", (d,))]
        return out

    def extra_repr(self) -> str:
        return (f"n_qubits={self.n_qubits}, n_readout={self.n_readout}, "
                f"levels={len(self.levels)}, readout_wires={self.readout_wires}")
