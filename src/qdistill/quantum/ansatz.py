"""Trainable circuits (ansatze): ``state (B, 2, ..., 2) -> state``.

Every ansatz registers its parameters in ``__init__`` (so ``state_dict`` round-trips and
``.to(device)`` works), reports ``num_parameters``, and lists its gates with concrete
angles through :meth:`Ansatz.ops` for export. Parameters are shared by the batch; all
single-qubit gates of a layer are fused per wire (2x2 products) and applied with
:func:`~qdistill.quantum.state.apply_single_qubit_layer`; a layer's CNOTs are one basis
permutation.

Initialisation: angles uniform in ``[0, 2 pi)`` (as ``qml.qnn.TorchLayer``), seeded by
torch's global RNG.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from .gates import GATES, Op, apply_gate, export_ops, rot_matrix, rx_matrix, ry_matrix, rz_matrix
from .state import apply_fused, apply_permutation, basis_permutation, flat, fuse_single_qubit_gates

__all__ = [
    "Ansatz",
    "Circuit",
    "HardwareEfficient",
    "PaperV2Block",
    "StronglyEntangling",
    "entangler_pairs",
]

_ROTATIONS = {"rx": rx_matrix, "ry": ry_matrix, "rz": rz_matrix}


def _angles(shape: Sequence[int]) -> nn.Parameter:
    return nn.Parameter(torch.rand(*shape) * (2 * math.pi))


def entangler_pairs(n_qubits: int, pattern: str) -> list[tuple[int, int]]:
    """(control, target) pairs: ``ring`` = (0,1), (1,2), ..., (n-1,0); ``line`` drops the last.

    A ring on 2 qubits is the single pair (0, 1) (as PennyLane's "ring" pattern), on 1
    qubit it is empty.
    """
    if pattern not in ("ring", "line"):
        raise ValueError(f"entangler must be 'ring' or 'line', got {pattern!r}")
    if pattern == "line" or n_qubits <= 2:
        return [(i, i + 1) for i in range(n_qubits - 1)]
    return [(i, (i + 1) % n_qubits) for i in range(n_qubits)]


class Ansatz(nn.Module):
    """Base class. Subclasses set ``n_qubits`` and implement ``forward`` and ``ops``."""

    n_qubits: int

    @property
    def num_parameters(self) -> int:
        """Number of trainable scalars."""
        return sum(p.numel() for p in self.parameters())

    def ops(self) -> list[Op]:
        """The gates in circuit order with the current angles (for export)."""
        raise NotImplementedError

    def unitary(self, dtype: torch.dtype = torch.complex64,
                device: torch.device | str | None = None) -> torch.Tensor:
        """The ``2**n x 2**n`` matrix ``U`` (differentiable): the ansatz applied to every
        basis state at once, i.e. to the identity as a batch of ``2**n`` states."""
        dim = 2**self.n_qubits
        eye = torch.eye(dim, dtype=dtype, device=device).view(dim, *([2] * self.n_qubits))
        return flat(self(eye)).T

    def _check(self, state: torch.Tensor) -> None:
        if state.dim() - 1 != self.n_qubits:
            raise ValueError(f"{type(self).__name__} acts on {self.n_qubits} qubits, got a "
                             f"state of {state.dim() - 1}")


class HardwareEfficient(Ansatz):
    """``n_layers`` x [rotations on every qubit, then CNOTs in a ring or line].

    Default rotations ``("ry", "rz")``: RY then RZ per qubit. Parameters
    ``weights (n_layers, n_qubits, len(rotations))``.
    """

    def __init__(self, n_qubits: int, n_layers: int = 1,
                 rotations: Sequence[str] = ("ry", "rz"), entangler: str = "ring") -> None:
        super().__init__()
        rotations = tuple(r.lower() for r in rotations)
        if not rotations or any(r not in _ROTATIONS for r in rotations):
            raise ValueError(f"rotations must be a non-empty subset of {sorted(_ROTATIONS)}")
        self.n_qubits, self.n_layers = int(n_qubits), int(n_layers)
        self.rotations, self.entangler = rotations, entangler
        self.pairs = entangler_pairs(self.n_qubits, entangler)
        self.weights = _angles((self.n_layers, self.n_qubits, len(rotations)))

    def layer_matrices(self, real: torch.dtype, cdt: torch.dtype) -> torch.Tensor:
        """``(n_layers, n_qubits, 2, 2)``: product of each wire's rotations, per layer."""
        w = self.weights.to(real)
        mats = None
        for j, r in enumerate(self.rotations):
            m = _ROTATIONS[r](w[..., j]).to(cdt)
            mats = m if mats is None else m @ mats
        return mats

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        self._check(state)
        mats = self.layer_matrices(state.real.dtype, state.dtype)
        blocks = fuse_single_qubit_gates(mats, range(self.n_qubits))  # all layers at once
        perm = basis_permutation(self.n_qubits, [("cnot", p) for p in self.pairs], state.device)
        for layer in range(self.n_layers):
            state = apply_fused(state, [(g, b[layer]) for g, b in blocks])
            if self.pairs:
                state = apply_permutation(state, *perm)
        return state

    def ops(self) -> list[Op]:
        w = self.weights.detach().cpu().tolist()
        return _layered_ops(
            self.n_layers, self.n_qubits,
            lambda layer, q: [Op(r, (q,), w[layer][q][j]) for j, r in enumerate(self.rotations)],
            lambda layer: self.pairs)

    def extra_repr(self) -> str:
        return (f"n_qubits={self.n_qubits}, n_layers={self.n_layers}, "
                f"rotations={self.rotations}, entangler={self.entangler!r}")


def _layered_ops(n_layers: int, n_qubits: int,
                 wire_ops: Callable[[int, int], list[Op]],
                 pairs: Callable[[int], Sequence[tuple[int, int]]]) -> list[Op]:
    """Per layer: ``wire_ops(layer, q)`` on every wire, then a CX on each of
    ``pairs(layer)`` — the gate list of a rotations-then-entangler ansatz."""
    out: list[Op] = []
    for layer in range(n_layers):
        for q in range(n_qubits):
            out += wire_ops(layer, q)
        out += [Op("cx", p) for p in pairs(layer)]
    return out


class StronglyEntangling(Ansatz):
    """``qml.StronglyEntanglingLayers``: per layer ``l``, ``Rot(w[l,i,0], w[l,i,1], w[l,i,2])``
    on every wire ``i``, then ``CNOT(i, (i + r_l) mod n)`` for ``i = 0..n-1`` with range
    ``r_l = (l mod (n - 1)) + 1`` (or ``ranges``). Same weight layout ``(L, n, 3)`` as
    PennyLane, so weights can be copied across."""

    def __init__(self, n_qubits: int, n_layers: int = 1,
                 ranges: Sequence[int] | None = None) -> None:
        super().__init__()
        self.n_qubits, self.n_layers = int(n_qubits), int(n_layers)
        n = self.n_qubits
        if ranges is None:
            ranges = [(lay % (n - 1)) + 1 if n > 1 else 0 for lay in range(self.n_layers)]
        ranges = [int(r) for r in ranges]
        if len(ranges) != self.n_layers:
            raise ValueError(f"ranges must have {self.n_layers} entries, got {len(ranges)}")
        if n > 1 and any(r % n == 0 for r in ranges):
            raise ValueError(f"a range that is a multiple of n_qubits={n} makes CNOT(i, i)")
        self.ranges = ranges
        self.weights = _angles((self.n_layers, n, 3))

    def _pairs(self, layer: int) -> list[tuple[int, int]]:
        n = self.n_qubits
        return [(i, (i + self.ranges[layer]) % n) for i in range(n)] if n > 1 else []

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        self._check(state)
        w = self.weights.to(state.real.dtype)
        mats = rot_matrix(w[..., 0], w[..., 1], w[..., 2]).to(state.dtype)
        blocks = fuse_single_qubit_gates(mats, range(self.n_qubits))
        for layer in range(self.n_layers):
            state = apply_fused(state, [(g, b[layer]) for g, b in blocks])
            pairs = self._pairs(layer)
            if pairs:
                perm = basis_permutation(self.n_qubits, [("cnot", p) for p in pairs],
                                         state.device)
                state = apply_permutation(state, *perm)
        return state

    def ops(self) -> list[Op]:
        w = self.weights.detach().cpu().tolist()
        return _layered_ops(self.n_layers, self.n_qubits,
                            lambda layer, q: export_ops("rot", (q,), w[layer][q]), self._pairs)

    def extra_repr(self) -> str:
        return f"n_qubits={self.n_qubits}, n_layers={self.n_layers}, ranges={self.ranges}"


class PaperV2Block(Ansatz):
    """The rotation block of arXiv:2311.13810 v2 (its architecture figure), exactly.

    Per qubit ``i`` in time order: ``RX(rx_i) RY(ry_i) RZ(rz_i) RX(rx_i)`` (the fourth gate
    reuses the first one's parameter), then ``RX(s_0) RY(s_1) RZ(s_2)`` with one
    parameter set ``s`` shared by all qubits. No entangling gate. ``3n + 3`` parameters
    per layer (``n_layers`` > 1 repeats the block with fresh parameters; the paper
    has one). As a matrix on wire ``i``:
    ``RZ(s2) RY(s1) RX(s0) RX(rx_i) RZ(rz_i) RY(ry_i) RX(rx_i)``, applied as one fused layer.
    """

    def __init__(self, n_qubits: int, n_layers: int = 1) -> None:
        super().__init__()
        self.n_qubits, self.n_layers = int(n_qubits), int(n_layers)
        self.rx = _angles((self.n_layers, self.n_qubits))
        self.ry = _angles((self.n_layers, self.n_qubits))
        self.rz = _angles((self.n_layers, self.n_qubits))
        self.shared = _angles((self.n_layers, 3))

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        self._check(state)
        real, cdt = state.real.dtype, state.dtype
        rx, ry, rz = (p.to(real) for p in (self.rx, self.ry, self.rz))
        s = self.shared.to(real)
        first = rx_matrix(rx).to(cdt)
        per_qubit = first @ rz_matrix(rz).to(cdt) @ ry_matrix(ry).to(cdt) @ first
        common = (rz_matrix(s[:, 2]).to(cdt) @ ry_matrix(s[:, 1]).to(cdt)
                  @ rx_matrix(s[:, 0]).to(cdt))
        mats = common[:, None] @ per_qubit  # (L, n, 2, 2)
        blocks = fuse_single_qubit_gates(mats, range(self.n_qubits))
        for layer in range(self.n_layers):
            state = apply_fused(state, [(g, b[layer]) for g, b in blocks])
        return state

    def ops(self) -> list[Op]:
        rx, ry, rz = (p.detach().cpu().tolist() for p in (self.rx, self.ry, self.rz))
        s = self.shared.detach().cpu().tolist()
        out: list[Op] = []
        for layer in range(self.n_layers):
            for q in range(self.n_qubits):
                out += [Op("rx", (q,), rx[layer][q]), Op("ry", (q,), ry[layer][q]),
                        Op("rz", (q,), rz[layer][q]), Op("rx", (q,), rx[layer][q])]
            for q in range(self.n_qubits):
                out += [Op("rx", (q,), s[layer][0]), Op("ry", (q,), s[layer][1]),
                        Op("rz", (q,), s[layer][2])]
        return out

    def extra_repr(self) -> str:
        return f"n_qubits={self.n_qubits}, n_layers={self.n_layers}"


class Circuit(Ansatz):
    """A gate list with one trainable angle per gate parameter.

    ``gates`` is a sequence of ``(name, wires)`` with names from
    :data:`~qdistill.quantum.gates.GATES`; e.g. ``[("h", [0]), ("cry", [0, 1]),
    ("rot", [1])]``. Angles live in one flat parameter ``weights`` in gate order. Gates
    run one by one (no fusion), so use it for small or irregular circuits.
    """

    def __init__(self, n_qubits: int, gates: Sequence[tuple[str, Sequence[int]]]) -> None:
        super().__init__()
        self.n_qubits = int(n_qubits)
        self.gates: list[tuple[str, tuple[int, ...]]] = []
        self.offsets: list[int] = []
        total = 0
        for name, wires in gates:
            name = name.lower()
            if name not in GATES:
                raise ValueError(f"unknown gate {name!r}; known: {sorted(GATES)}")
            wires = (wires,) if isinstance(wires, int) else tuple(int(w) for w in wires)
            n_wires, n_params = GATES[name]
            if (len(wires) != n_wires or len(set(wires)) != n_wires
                    or any(not 0 <= w < self.n_qubits for w in wires)):
                raise ValueError(f"bad wires {wires} for {name} on {self.n_qubits} qubits")
            self.gates.append((name, wires))
            self.offsets.append(total)
            total += n_params
        self.weights = _angles((total,))

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        self._check(state)
        w = self.weights.to(state.real.dtype)
        for (name, wires), off in zip(self.gates, self.offsets, strict=True):
            k = GATES[name][1]
            params = None if k == 0 else (w[off] if k == 1 else w[off:off + k])
            state = apply_gate(state, name, wires, params)
        return state

    def ops(self) -> list[Op]:
        w = self.weights.detach().cpu().tolist()
        out: list[Op] = []
        for (name, wires), off in zip(self.gates, self.offsets, strict=True):
            out += export_ops(name, wires, w[off:off + GATES[name][1]])
        return out

    def extra_repr(self) -> str:
        return f"n_qubits={self.n_qubits}, gates={len(self.gates)}"
