"""Gate matrices and the functional gate API.

Conventions (all as in PennyLane, so results can be compared gate by gate):

- ``RX(t) = exp(-i t X / 2)``, ``RY(t) = exp(-i t Y / 2)``, ``RZ(t) = exp(-i t Z / 2)``.
- ``Rot(phi, theta, omega) = RZ(omega) RY(theta) RZ(phi)`` (``qml.Rot``: ``phi`` acts first).
- ``U3(theta, phi, lam) = [[cos, -e^{i lam} sin], [e^{i phi} sin, e^{i(phi+lam)} cos]]`` of
  ``theta / 2`` (``qml.U3``; equals OpenQASM 3 ``U`` / ``u``).
- Two-qubit gates take ``wires = [control, target]``; ``CRX/CRY/CRZ`` apply the rotation
  to the target when the control is 1.

Angles are a Python float, a 0-d tensor (one angle shared by the whole batch) or a
``(B,)`` tensor (one angle per sample); the gate then acts per sample. Every function
returns the new state; nothing is modified in place, so autograd sees every gate.

How each gate is applied (cheapest first): ``RZ``, ``Z``, ``CZ``, ``CRZ`` are diagonal
(an elementwise product); ``X``, ``CNOT``, ``SWAP`` are basis permutations (one gather);
the rest are small dense matrices (:func:`~qdistill.quantum.state.apply_matrix`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple

import torch

from .state import apply_diagonal, apply_matrix, apply_permutation, basis_permutation, real_dtype

__all__ = [
    "GATES",
    "Op",
    "apply_gate",
    "apply_ops",
    "cnot",
    "controlled",
    "crx",
    "cry",
    "crz",
    "cz",
    "export_ops",
    "gate_matrix",
    "h",
    "rot",
    "rot_matrix",
    "rx",
    "rx_matrix",
    "ry",
    "ry_matrix",
    "rz",
    "rz_matrix",
    "swap",
    "u3",
    "u3_matrix",
    "x",
    "y",
    "z",
]

Angle = float | torch.Tensor

# name -> (number of wires, number of angles)
GATES: dict[str, tuple[int, int]] = {
    "h": (1, 0), "x": (1, 0), "y": (1, 0), "z": (1, 0),
    "rx": (1, 1), "ry": (1, 1), "rz": (1, 1), "rot": (1, 3), "u3": (1, 3),
    "cnot": (2, 0), "cx": (2, 0), "cz": (2, 0), "swap": (2, 0),
    "crx": (2, 1), "cry": (2, 1), "crz": (2, 1),
}


class Op(NamedTuple):
    """One gate with concrete angles, for export (e.g. OpenQASM 3).

    ``name`` is one of ``h x y z rx ry rz u cx cz crx cry crz swap``; ``angle`` is a float
    for one-angle gates, a tuple ``(theta, phi, lam)`` for ``u``, else ``None``.
    """

    name: str
    wires: tuple[int, ...]
    angle: float | tuple[float, ...] | None = None


def _complex_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.complex128 if t.dtype == torch.float64 else torch.complex64


def _mat2(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    if not a.shape == b.shape == c.shape == d.shape:  # shared and per-sample angles mix
        a, b, c, d = torch.broadcast_tensors(a, b, c, d)
    return torch.stack([torch.stack([a, b], -1), torch.stack([c, d], -1)], -2)


def _cplx(re: torch.Tensor, im: torch.Tensor) -> torch.Tensor:
    return torch.complex(re, im)


def rx_matrix(theta: torch.Tensor) -> torch.Tensor:
    """``[[c, -i s], [-i s, c]]`` with ``c, s = cos, sin(theta/2)``; shape ``(..., 2, 2)``."""
    c, s = torch.cos(theta / 2), torch.sin(theta / 2)
    zero = torch.zeros_like(c)
    return _cplx(_mat2(c, zero, zero, c), _mat2(zero, -s, -s, zero))


def ry_matrix(theta: torch.Tensor) -> torch.Tensor:
    """``[[c, -s], [s, c]]``; real, returned as complex."""
    c, s = torch.cos(theta / 2), torch.sin(theta / 2)
    return _cplx(_mat2(c, -s, s, c), torch.zeros(c.shape + (2, 2), dtype=c.dtype,
                                                  device=c.device))


def rz_matrix(theta: torch.Tensor) -> torch.Tensor:
    """``diag(e^{-i theta/2}, e^{i theta/2})``."""
    c, s = torch.cos(theta / 2), torch.sin(theta / 2)
    zero = torch.zeros_like(c)
    return _cplx(_mat2(c, zero, zero, c), _mat2(-s, zero, zero, s))


def _rz_diag(theta: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(theta / 2), torch.sin(theta / 2)
    return _cplx(torch.stack([c, c], -1), torch.stack([-s, s], -1))


def rot_matrix(phi: torch.Tensor, theta: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
    """``RZ(omega) RY(theta) RZ(phi)`` in closed form (``qml.Rot``)."""
    c, s = torch.cos(theta / 2), torch.sin(theta / 2)
    p, m = (phi + omega) / 2, (phi - omega) / 2
    re = _mat2(torch.cos(p) * c, -torch.cos(m) * s, torch.cos(m) * s, torch.cos(p) * c)
    im = _mat2(-torch.sin(p) * c, -torch.sin(m) * s, -torch.sin(m) * s, torch.sin(p) * c)
    return _cplx(re, im)


def u3_matrix(theta: torch.Tensor, phi: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """``[[c, -e^{i lam} s], [e^{i phi} s, e^{i(phi+lam)} c]]`` (``qml.U3``, QASM ``u``)."""
    c, s = torch.cos(theta / 2), torch.sin(theta / 2)
    re = _mat2(c, -torch.cos(lam) * s, torch.cos(phi) * s, torch.cos(phi + lam) * c)
    im = _mat2(torch.zeros_like(c), -torch.sin(lam) * s, torch.sin(phi) * s,
               torch.sin(phi + lam) * c)
    return _cplx(re, im)


_S2 = 1 / math.sqrt(2)
_FIXED = {
    "h": [[_S2, _S2], [_S2, -_S2]],
    "x": [[0, 1], [1, 0]],
    "y": [[0, -1j], [1j, 0]],
    "z": [[1, 0], [0, -1]],
    "cnot": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]],
    "cz": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, -1]],
    "swap": [[1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]],
}
_FIXED["cx"] = _FIXED["cnot"]
_FIXED_DIAG = {"z": [1, -1], "cz": [1, 1, 1, -1]}


@lru_cache(maxsize=128)
def _fixed(name: str, dtype: torch.dtype, device: str, diag: bool = False) -> torch.Tensor:
    """Constant gate matrices (or diagonals), cached per dtype and device."""
    return torch.tensor((_FIXED_DIAG if diag else _FIXED)[name], dtype=dtype, device=device)


def controlled(matrix: torch.Tensor) -> torch.Tensor:
    """``|0><0| (x) I + |1><1| (x) U`` as a ``(..., 4, 4)`` matrix (control = first wire)."""
    out = torch.zeros(matrix.shape[:-2] + (4, 4), dtype=matrix.dtype, device=matrix.device)
    out[..., 0, 0] = 1
    out[..., 1, 1] = 1
    out[..., 2:, 2:] = matrix
    return out


def _as_angles(params: Angle | Sequence[Angle] | None, count: int,
               like: torch.Tensor) -> list[torch.Tensor]:
    """Angles as tensors of the state's real dtype and device."""
    if count == 0:
        return []
    if isinstance(params, torch.Tensor) and count > 1 and params.dim() >= 1 \
            and params.shape[-1] == count:
        params = list(params.unbind(-1))
    if count == 1 and not isinstance(params, (list, tuple)):
        params = [params]
    if params is None or len(params) != count:
        raise ValueError(f"expected {count} angle(s), got {params!r}")
    rdt = real_dtype(like.dtype)
    return [p.to(device=like.device, dtype=rdt) if isinstance(p, torch.Tensor)
            else torch.tensor(float(p), dtype=rdt, device=like.device) for p in params]


def gate_matrix(name: str, params: Angle | Sequence[Angle] | None = None, *,
                like: torch.Tensor | None = None) -> torch.Tensor:
    """Matrix of a named gate, ``(2, 2)``/``(4, 4)`` or batched ``(B, ., .)``.

    ``like`` (a state) fixes dtype and device; default complex64 on CPU, or complex128
    when the angles are float64.
    """
    name = name.lower()
    if name not in GATES:
        raise ValueError(f"unknown gate {name!r}; known: {sorted(GATES)}")
    if like is None:
        first = params[0] if isinstance(params, (list, tuple)) else params
        dtype = _complex_dtype(first) if isinstance(first, torch.Tensor) else torch.complex64
        device = first.device if isinstance(first, torch.Tensor) else None
        like = torch.empty(0, dtype=dtype, device=device)
    if name in _FIXED:
        return _fixed(name, like.dtype, str(like.device))
    angles = _as_angles(params, GATES[name][1], like)
    base = name[1:] if name.startswith("c") else name
    fn = {"rx": rx_matrix, "ry": ry_matrix, "rz": rz_matrix, "rot": rot_matrix,
          "u3": u3_matrix}[base]
    mat = fn(*angles).to(like.dtype)
    return controlled(mat) if name.startswith("c") else mat


def apply_gate(state: torch.Tensor, name: str, wires: Sequence[int] | int,
               params: Angle | Sequence[Angle] | None = None) -> torch.Tensor:
    """Apply the named gate (see :data:`GATES`) to ``wires`` and return the new state."""
    name = name.lower()
    if name not in GATES:
        raise ValueError(f"unknown gate {name!r}; known: {sorted(GATES)}")
    wires = [wires] if isinstance(wires, int) else list(wires)
    n_wires, n_params = GATES[name]
    if len(wires) != n_wires:
        raise ValueError(f"{name} acts on {n_wires} wire(s), got {wires}")
    n = state.dim() - 1
    if name in ("x", "cnot", "cx", "swap"):
        perm, inv = basis_permutation(n, [(name, wires)], state.device)
        return apply_permutation(state, perm, inv)
    if name in _FIXED_DIAG:
        return apply_diagonal(state, _fixed(name, state.dtype, str(state.device), True), wires)
    if name in ("rz", "crz"):
        (theta,) = _as_angles(params, 1, state)
        diag = _rz_diag(theta)
        if name == "crz":
            ones = torch.ones_like(diag)
            diag = torch.cat([ones, diag], -1)
        return apply_diagonal(state, diag, wires)
    return apply_matrix(state, gate_matrix(name, params, like=state), wires)


def apply_ops(state: torch.Tensor, ops: Sequence[Op | tuple]) -> torch.Tensor:
    """Apply exported :class:`Op` s (names ``u`` and ``cx`` included) in order."""
    for op in ops:
        name, wires, angle = (tuple(op) + (None,))[:3]
        name = {"u": "u3"}.get(name, name)
        state = apply_gate(state, name, wires, angle)
    return state


def export_ops(name: str, wires: Sequence[int], params: Sequence[float] = ()) -> list[Op]:
    """Translate one gate into :class:`Op` s using only exportable names.

    ``cnot -> cx``, ``rot(phi, theta, omega) -> rz(phi), ry(theta), rz(omega)``,
    ``u3 -> u``; everything else keeps its name.
    """
    name = name.lower()
    wires = tuple(int(w) for w in wires)
    params = [float(p) for p in params]
    if name == "rot":
        phi, theta, omega = params
        return [Op("rz", wires, phi), Op("ry", wires, theta), Op("rz", wires, omega)]
    if name == "u3":
        return [Op("u", wires, tuple(params))]
    if name == "cnot":
        name = "cx"
    return [Op(name, wires, params[0] if params else None)]


# ----------------------------------------------------------------- functional API ---

def h(state: torch.Tensor, wire: int) -> torch.Tensor:
    """Hadamard."""
    return apply_gate(state, "h", [wire])


def x(state: torch.Tensor, wire: int) -> torch.Tensor:
    """Pauli X (a permutation)."""
    return apply_gate(state, "x", [wire])


def y(state: torch.Tensor, wire: int) -> torch.Tensor:
    """Pauli Y."""
    return apply_gate(state, "y", [wire])


def z(state: torch.Tensor, wire: int) -> torch.Tensor:
    """Pauli Z (a sign flip)."""
    return apply_gate(state, "z", [wire])


def rx(state: torch.Tensor, theta: Angle, wire: int) -> torch.Tensor:
    """``RX(theta)``; ``theta`` scalar (shared) or ``(B,)`` (per sample)."""
    return apply_gate(state, "rx", [wire], theta)


def ry(state: torch.Tensor, theta: Angle, wire: int) -> torch.Tensor:
    """``RY(theta)``."""
    return apply_gate(state, "ry", [wire], theta)


def rz(state: torch.Tensor, theta: Angle, wire: int) -> torch.Tensor:
    """``RZ(theta)`` (diagonal)."""
    return apply_gate(state, "rz", [wire], theta)


def rot(state: torch.Tensor, phi: Angle, theta: Angle, omega: Angle, wire: int) -> torch.Tensor:
    """``Rot(phi, theta, omega) = RZ(omega) RY(theta) RZ(phi)``."""
    return apply_gate(state, "rot", [wire], [phi, theta, omega])


def u3(state: torch.Tensor, theta: Angle, phi: Angle, lam: Angle, wire: int) -> torch.Tensor:
    """``U3(theta, phi, lam)`` (OpenQASM ``u``)."""
    return apply_gate(state, "u3", [wire], [theta, phi, lam])


def cnot(state: torch.Tensor, control: int, target: int) -> torch.Tensor:
    """CNOT (a permutation)."""
    return apply_gate(state, "cnot", [control, target])


def cz(state: torch.Tensor, control: int, target: int) -> torch.Tensor:
    """CZ (a sign flip on ``|11>``)."""
    return apply_gate(state, "cz", [control, target])


def swap(state: torch.Tensor, a: int, b: int) -> torch.Tensor:
    """SWAP (a permutation)."""
    return apply_gate(state, "swap", [a, b])


def crx(state: torch.Tensor, theta: Angle, control: int, target: int) -> torch.Tensor:
    """Controlled ``RX(theta)``."""
    return apply_gate(state, "crx", [control, target], theta)


def cry(state: torch.Tensor, theta: Angle, control: int, target: int) -> torch.Tensor:
    """Controlled ``RY(theta)``."""
    return apply_gate(state, "cry", [control, target], theta)


def crz(state: torch.Tensor, theta: Angle, control: int, target: int) -> torch.Tensor:
    """Controlled ``RZ(theta)`` (diagonal)."""
    return apply_gate(state, "crz", [control, target], theta)
