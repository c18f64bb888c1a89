"""Gate lists (:class:`~qdistill.quantum.gates.Op`) -> OpenQASM 3 programs.

Only the standard library is used (``include "stdgates.inc";``), so an OpenQASM 3
consumer reads the program without qdistill's definitions: Qiskit's
``qiskit.qasm3.loads`` does (tested); PennyLane 0.45's ``from_qasm3`` needs the
include line dropped and ``U`` written as ``u3`` (docs/hardware.md).
``Op("u", ...)`` is written as the built-in ``U`` gate: ``stdgates.inc`` has no
``u``, and its ``u3`` adds a global phase; ``U`` is exactly ``qml.U3``. Angles are
written with ``repr`` (the shortest decimal that reads back as the same double), so
the program reproduces the simulator's angles bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from .gates import Op

__all__ = ["QASM_GATES", "to_qasm3"]

# Op name -> (OpenQASM 3 name, wires, angles).
QASM_GATES: dict[str, tuple[str, int, int]] = {
    "h": ("h", 1, 0), "x": ("x", 1, 0), "y": ("y", 1, 0), "z": ("z", 1, 0),
    "rx": ("rx", 1, 1), "ry": ("ry", 1, 1), "rz": ("rz", 1, 1), "u": ("U", 1, 3),
    "cx": ("cx", 2, 0), "cnot": ("cx", 2, 0), "cz": ("cz", 2, 0), "swap": ("swap", 2, 0),
    "crx": ("crx", 2, 1), "cry": ("cry", 2, 1), "crz": ("crz", 2, 1),
}


def _angle(value: float) -> str:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"non-finite gate angle {value!r}; the circuit cannot be exported")
    return repr(value)


def standard_gate(op: Op, n_qubits: int) -> tuple[str, tuple[int, ...], tuple[float, ...]]:
    """(OpenQASM 3 stdgates name, wires, angles) of one Op, checked against QASM_GATES
    (also the gate names Qiskit uses); ``ValueError`` when it does not fit."""
    name, wires, angle = (tuple(op) + (None,))[:3]
    if name not in QASM_GATES:
        raise ValueError(f"gate {name!r} has no OpenQASM 3 standard-library form; "
                         f"exportable: {', '.join(sorted(QASM_GATES))}")
    qasm_name, n_wires, n_angles = QASM_GATES[name]
    wires = tuple(int(w) for w in wires)
    if len(wires) != n_wires or any(not 0 <= w < n_qubits for w in wires):
        raise ValueError(f"{name} on wires {wires}: needs {n_wires} wire(s) in 0..{n_qubits - 1}")
    angles = () if n_angles == 0 else tuple(angle) if n_angles > 1 else (angle,)
    if len(angles) != n_angles or any(a is None for a in angles):
        raise ValueError(f"{name} takes {n_angles} angle(s), got {angle!r}")
    return qasm_name, wires, tuple(float(a) for a in angles)


def _statement(op: Op, n_qubits: int) -> str:
    qasm_name, wires, angles = standard_gate(op, n_qubits)
    params = f"({', '.join(_angle(a) for a in angles)})" if angles else ""
    return f"{qasm_name}{params} {', '.join(f'q[{w}]' for w in wires)};"


def to_qasm3(ops: Sequence[Op], n_qubits: int, shots: int | None = None,
             comments: Iterable[str] = ()) -> str:
    """An OpenQASM 3 program: ``ops`` on ``qubit[n] q``, then ``c = measure q;``.

    ``c[k]`` holds qubit ``k``. ``shots`` has no standard field in OpenQASM 3, so it is
    written as a ``// shots: N`` line after the header for the runner to read.
    ``comments`` become ``//`` lines after it (one line each).
    """
    if n_qubits < 1:
        raise ValueError(f"n_qubits must be >= 1, got {n_qubits}")
    lines = ["OPENQASM 3.0;", 'include "stdgates.inc";']
    if shots is not None:
        lines.append(f"// shots: {int(shots)}")
    lines += [f"// {c}".rstrip() for text in comments for c in str(text).splitlines()]
    lines += [f"qubit[{n_qubits}] q;", f"bit[{n_qubits}] c;"]
    lines += [_statement(op, n_qubits) for op in ops]
    lines.append("c = measure q;")
    return "\n".join(lines) + "\n"
