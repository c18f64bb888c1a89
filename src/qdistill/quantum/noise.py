"""Noise models: exact density matrices and seeded Monte-Carlo trajectories.

    noise = NoiseModel.parse("depolarizing=0.01,depolarizing2=0.02,damping=0.001,readout=0.02")
    noise = NoiseModel.preset("ibm-heron")        # approximate public calibration figures
    set_noise(student, noise)                     # its circuit now runs under noise
    with noisy(student, noise, shots=1000, seed=0, method="trajectories"):
        acc = evaluate(student, images, labels)   # noise and shots for the block only

:class:`NoiseModel` and the device presets live in :mod:`.noise_model` (re-exported
here). The circuit is the layer's own gate list, ``layer.gates(x)`` (= ``layer.ops(x[i])`` for
every sample, encoding gates included), so noise hits the same gates an export runs.
After every gate on wires ``W``, the channels of :data:`.channels.CHANNELS` with a
non-zero rate act, in the table's order: ``depolarizing`` (``qml.DepolarizingChannel``)
after 1-qubit gates, ``depolarizing2`` (the 15 two-qubit Paulis) after 2-qubit gates on
``W`` together, then amplitude ``damping`` on each wire of ``W``. Each channel's file
has its formula, Kraus matrices and PennyLane / Qiskit equivalent; the simulators here
use nothing but the Kraus matrices, so a new channel is one file plus one table entry.

Readout (``readout = r``): every measured bit flips with probability ``r``, applied to the
probabilities of the measured wires before any shot sampling (``qml.BitFlip(r)`` just
before a Z-basis measurement is the same); ``<Z>`` becomes ``(1 - 2r) <Z>``.

Methods (both differentiable by autograd in the trained angles and the features):

- ``density``: exact. ``rho`` is a flat ``(B, 4**n)`` (ket bits, then bra bits); a gate
  plus its noise is one superoperator ``sum_K kron(K, conj K)`` (``4 x 4`` or ``16 x 16``)
  applied to the ket and bra bits of its wires; runs of 1-qubit gates on a wire are
  composed first. Refused above 10 qubits (``4**n`` entries: 8 MiB per sample).
- ``trajectories``: ``T`` statevectors per sample, all ``B*T`` at once. Every channel
  is a quantum jump: Kraus matrix ``K_k`` with probability ``q_k = ||K_k psi||^2`` (from
  the reduced density matrix of its wires), applied as ``K_k / sqrt(q_k)`` with ``q``
  constant for autograd: states stay normalised, ``E[|psi><psi|] = rho``, and the
  expected gradient is the exact one (importance weights; no score-function term),
  though noisier with damping. When every ``K_k^+ K_k`` is a multiple of ``I``
  (depolarizing: a random Pauli) the ``q_k`` are constants and nothing is read from the
  state. A probability from ``T`` trajectories has standard error
  ``<= sqrt(p (1 - p) / T)``. Same seed, same trajectories (one uniform draw per channel
  and wire group; the jump is the ``K_1, ..., K_{m-1}, K_0`` interval it falls in, which
  reproduces the draws of the earlier per-channel code up to float rounding).

Cost (one loaded CPU core, an 8-qubit amplitude-encoded paper-v2 student, 565 gates):
about 0.5 s per image by density matrix, 0.2 s by 32 trajectories; exact: 0.5 ms.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from .channels.jumps import Jump, jump, prepare_jump
from .gates import apply_gate, gate_matrix
from .layer import Gate
from .measure import Measurement, SeededSampling, marginal_probabilities
from .memory import GIB, available_memory_bytes
from .noise_model import DEVICES, PRESETS, DeviceFigures, NoiseModel
from .state import zero_state

__all__ = [
    "DEVICES",
    "METHODS",
    "PRESETS",
    "DeviceFigures",
    "NoiseModel",
    "NoisySimulator",
    "density_matrix",
    "noisy",
    "readout_flip",
    "set_noise",
    "set_shots",
    "superoperator",
    "trajectory_probabilities",
]

METHODS = ("density", "trajectories")
MAX_DENSITY_QUBITS = 10  # 4**10 complex64 = 8 MiB per sample
_CHUNK_BYTES = 256 * 1024**2  # samples are simulated in chunks of about this size


# ---------------------------------------------------------- density matrices ---

def _kron(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Batched Kronecker product of ``(..., d, d)`` matrices."""
    d = a.shape[-1] * b.shape[-1]
    return (a[..., :, None, :, None] * b[..., None, :, None, :]).reshape(*a.shape[:-2], d, d)


def superoperator(kraus: Sequence[torch.Tensor]) -> torch.Tensor:
    """``sum_K kron(K, conj K)``: ``vec(rho) -> vec(sum_K K rho K^+)`` with ``vec`` reading
    the ket index as the most significant part (as rho's axes are laid out)."""
    return sum(_kron(k, k.conj()) for k in kraus)


def _channel(k: int, noise: NoiseModel, dtype: torch.dtype, device: torch.device
             ) -> torch.Tensor | None:
    """The superoperator of the noise after a k-wire gate: the active channels composed in
    table order (``damping o depolarizing``); a per-wire channel on 2 wires is the
    Kronecker product of its Kraus sets."""
    out = None
    for chan, rate in noise.channels():
        groups = chan.targets(range(k))
        if not groups:
            continue
        one = chan.kraus(rate, dtype, device)
        kraus = one
        for _ in groups[1:]:
            kraus = [_kron(a, b) for a in kraus for b in one]
        s = superoperator(kraus)
        out = s if out is None else s @ out
    return out


_IN, _OUT, _FREE = "ABCDEFGH", "IJKLMNOP", "acdefghijk"


def _apply_superop(rho: torch.Tensor, s: torch.Tensor, wires: Sequence[int], n: int
                   ) -> torch.Tensor:
    """``rho (B, 4**n)`` (flat, ket bits then bra bits) -> ``S vec(rho)`` on the ket and bra
    bits of ``wires``; ``s`` is ``(d^2, d^2)`` shared or ``(B, d^2, d^2)`` per sample.

    ``rho`` is viewed with the untouched bits grouped into a few large axes (at most
    ``2k + 1``), so the einsum's internal copies move long contiguous runs instead of
    permuting ``2n`` axes of size 2 (that permutation dominated: 12 of 16 s for 8 qubits).
    """
    pos = [*wires, *(n + w for w in wires)]  # the order S's row/column index reads them
    shape, ins, outs, free = [rho.shape[0]], ["b"], ["b"], iter(_FREE)
    prev = 0
    for p in sorted(pos):
        if p > prev:
            shape.append(2 ** (p - prev))
            ins.append(next(free))
            outs.append(ins[-1])
        shape.append(2)
        ins.append(_IN[pos.index(p)])
        outs.append(_OUT[pos.index(p)])
        prev = p + 1
    if prev < 2 * n:
        shape.append(2 ** (2 * n - prev))
        ins.append(next(free))
        outs.append(ins[-1])
    k = len(pos)
    sv = s.reshape(*s.shape[:-2], *([2] * (2 * k)))
    spec = ("b" if s.dim() == 3 else "") + _OUT[:k] + _IN[:k]
    out = torch.einsum(f"{spec},{''.join(ins)}->{''.join(outs)}", sv, rho.view(shape))
    return out.reshape(rho.shape[0], -1)


def _embed(s1: torch.Tensor, slot: int) -> torch.Tensor:
    """A 1-qubit superoperator ``(..., 4, 4)`` as one on 2 wires ``(..., 16, 16)``, acting
    on wire ``slot`` (0 or 1); indices read (ket 0, ket 1, bra 0, bra 1)."""
    eye = torch.eye(2, dtype=s1.dtype, device=s1.device)
    p = s1.reshape(*s1.shape[:-2], 2, 2, 2, 2)  # out ket, out bra, in ket, in bra
    spec = "...wxyz,bd,eg->...wbxeydzg" if slot == 0 else "...wxyz,ac,fh->...awfxcyhz"
    return torch.einsum(spec, p, eye, eye).reshape(*s1.shape[:-2], 16, 16)


def density_matrix(gates: Sequence[Gate], n_qubits: int, batch: int,
                   noise: NoiseModel | None = None, dtype: torch.dtype = torch.complex64,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """Exact ``rho (B, 2**n, 2**n)`` after ``gates`` from ``|0...0><0...0|`` under ``noise``
    (gate noise only; readout acts on measured probabilities). Wire 0 is the most
    significant bit of the row/column index, as in the statevector and PennyLane."""
    _check_density(n_qubits, batch, dtype, device)
    n = n_qubits
    rho = torch.zeros(batch, 4**n, dtype=dtype, device=device)
    rho[:, 0] = 1
    noise = noise if noise is not None and not noise.noiseless else None
    channels = {k: _channel(k, noise, dtype, rho.device) if noise else None for k in (1, 2)}
    pending: dict[int, torch.Tensor] = {}  # wire -> composed 1-qubit superoperator

    for gate in gates:
        u = gate_matrix(gate.name, gate.params, like=rho)
        s = _kron(u, u.conj())
        if channels[len(gate.wires)] is not None:
            s = channels[len(gate.wires)] @ s
        if len(gate.wires) == 1:
            (w,) = gate.wires
            pending[w] = s @ pending[w] if w in pending else s
            continue
        for slot, w in enumerate(gate.wires):  # earlier 1-qubit gates on these wires
            if w in pending:
                s = s @ _embed(pending.pop(w), slot)
        rho = _apply_superop(rho, s, gate.wires, n)
    for w in sorted(pending):
        rho = _apply_superop(rho, pending.pop(w), [w], n)
    return rho.reshape(batch, 2**n, 2**n)


def _size(nbytes: float) -> str:
    return f"{nbytes / GIB:.3g} GiB" if nbytes >= GIB else f"{nbytes / 1024**2:.3g} MiB"


def _check_density(n: int, batch: int, dtype: torch.dtype, device: torch.device | str | None,
                   memory: bool = True) -> None:
    per_sample = 4**n * torch.empty((), dtype=dtype).element_size()
    if n > MAX_DENSITY_QUBITS:
        raise ValueError(
            f"exact density-matrix simulation stops at {MAX_DENSITY_QUBITS} qubits: {n} qubits "
            f"need {_size(per_sample)} per sample ({_size(per_sample * batch)} for a batch of "
            f"{batch}) in {dtype}; use method='trajectories'")
    need = per_sample * batch
    if memory and need > 64 * 1024**2 and need > available_memory_bytes(device):
        raise ValueError(
            f"density matrices of {n} qubits x batch {batch} need {_size(need)}, more than "
            f"the memory available on {device or 'cpu'}; use a smaller batch or "
            "method='trajectories'")


# ------------------------------------------------------------------- trajectories ---

def _noise_psi(psi: torch.Tensor, wires: Sequence[int], jumps: Sequence[Jump],
               gen: torch.Generator) -> torch.Tensor:
    """The noise after a gate on ``wires``: every channel's jumps, in table order."""
    for jp in jumps:
        for group in jp.chan.targets(wires):
            psi = jump(psi, group, jp, gen)
    return psi


def trajectory_probabilities(gates: Sequence[Gate], n_qubits: int, batch: int,
                             noise: NoiseModel, trajectories: int, generator: torch.Generator,
                             dtype: torch.dtype = torch.complex64,
                             device: torch.device | str | None = None) -> torch.Tensor:
    """Basis-state probabilities ``(B, 2**n)``: the mean of ``|psi_t|^2`` over
    ``trajectories`` Monte-Carlo trajectories per sample (gate noise only)."""
    t = int(trajectories)
    psi = zero_state(n_qubits, batch * t, dtype=dtype, device=device)
    jumps = [prepare_jump(c, r, psi.dtype, psi.device) for c, r in noise.channels()]
    for gate in gates:
        params = tuple(p.repeat_interleave(t) if isinstance(p, torch.Tensor) and p.dim() == 1
                       else p for p in gate.params)
        psi = apply_gate(psi, gate.name, gate.wires, params)
        psi = _noise_psi(psi, gate.wires, jumps, generator)
    probs = psi.real.square() + psi.imag.square()
    return probs.reshape(batch, t, -1).mean(1)


# ------------------------------------------------------------------------ runner ---

def readout_flip(probs: torch.Tensor, r: float) -> torch.Tensor:
    """Flip every bit of the outcome independently with probability ``r``:
    ``(B, 2**k)`` probabilities in, the same out (differentiable)."""
    if not r:
        return probs
    k = int(round(math.log2(probs.shape[-1])))
    p = probs.reshape(probs.shape[0], *([2] * k))
    for i in range(k):
        p = (1 - r) * p + r * p.flip(1 + i)
    return p.reshape(probs.shape)


def _slice(gates: Sequence[Gate], start: int, stop: int) -> list[Gate]:
    return [g._replace(params=tuple(p[start:stop] if isinstance(p, torch.Tensor) and p.dim()
                                    else p for p in g.params)) for g in gates]


class NoisySimulator(SeededSampling):
    """Runs gate lists under a :class:`NoiseModel`; attach with :func:`set_noise`.

    ``method``: ``density`` (exact, up to 10 qubits) or ``trajectories`` (``trajectories``
    Monte-Carlo statevectors per sample). ``seed=None`` draws the trajectory seed from
    torch's global RNG on first use (so ``torch.manual_seed`` fixes it); generators
    advance from call to call, :meth:`reseed` restarts them.
    """

    def __init__(self, noise: NoiseModel | str, method: str = "density",
                 trajectories: int = 100, seed: int | None = None) -> None:
        if method not in METHODS:
            raise ValueError(f"noise method must be one of {', '.join(METHODS)}, got {method!r}")
        if int(trajectories) < 1:
            raise ValueError(f"trajectories must be >= 1, got {trajectories}")
        self.noise = NoiseModel.parse(noise)
        self.method, self.trajectories = method, int(trajectories)
        self.seed = seed
        self._generators: dict[str, torch.Generator] = {}

    def __repr__(self) -> str:
        extra = f", trajectories={self.trajectories}" if self.method == "trajectories" else ""
        return f"NoisySimulator({self.noise.spec()!r}, method={self.method!r}{extra})"


    def probabilities(self, gates: Sequence[Gate], n_qubits: int, batch: int,
                      device: torch.device | str | None = None) -> torch.Tensor:
        """Basis-state probabilities ``(B, 2**n)`` under the gate noise (no readout)."""
        device = torch.device(device or "cpu")
        wide = any(isinstance(p, torch.Tensor) and p.dtype == torch.float64
                   for g in gates for p in g.params)
        dtype = torch.complex128 if wide else torch.complex64
        size = torch.empty((), dtype=dtype).element_size()
        per_sample = size * (4**n_qubits if self.method == "density"
                             else self.trajectories * 2**n_qubits)
        if self.method == "density":
            _check_density(n_qubits, batch, dtype, device, memory=False)
        chunk = max(1, _CHUNK_BYTES // per_sample)
        out = []
        for start in range(0, batch, chunk):
            part, b = _slice(gates, start, start + chunk), min(chunk, batch - start)
            if self.method == "density":
                rho = density_matrix(part, n_qubits, b, self.noise, dtype, device)
                out.append(rho.diagonal(dim1=1, dim2=2).real)
            else:
                out.append(trajectory_probabilities(part, n_qubits, b, self.noise,
                                                    self.trajectories, self.generator(device),
                                                    dtype, device))
        return torch.cat(out)

    def run(self, gates: Sequence[Gate], n_qubits: int, measurement: Measurement,
            batch: int, device: torch.device | str | None = None) -> torch.Tensor:
        """What ``measurement`` returns for the noisy circuit (readout flips included)."""
        p = self.probabilities(gates, n_qubits, batch, device)
        p = readout_flip(marginal_probabilities(p, measurement.wires), self.noise.readout)
        return measurement.from_probabilities(p)


def _circuits(model: nn.Module, required: bool = True) -> list[nn.Module]:
    """The circuits of ``model`` a noise model can be attached to (a ``noise`` attribute
    and a ``gates`` list); none is an error when ``required``."""
    found = [m for m in model.modules() if hasattr(m, "noise") and callable(getattr(m, "gates",
                                                                                     None))]
    if not found and required:
        raise ValueError(f"{type(model).__name__} has no circuit that can run under noise "
                         "(a QuantumLayer or the paper-v1 circuit)")
    return found


def set_noise(model: nn.Module, noise: NoiseModel | str | NoisySimulator | None,
              method: str = "density", trajectories: int = 100, seed: int | None = None
              ) -> int:
    """Run every circuit of ``model`` under ``noise`` from now on (``None``: exact again;
    a :class:`NoisySimulator` is used as it is). No retraining and no change to the
    weights or ``state_dict``. Returns the number of circuits changed.
    """
    sim = noise if noise is None or isinstance(noise, NoisySimulator) else NoisySimulator(
        noise, method, trajectories, seed)
    found = _circuits(model, required=sim is not None)  # exact: nothing to switch off
    for m in found:
        m.noise = sim
    return len(found)


def set_shots(model: nn.Module, shots: int | None, seed: int | None = None) -> int:
    """Measure every circuit of ``model`` with ``shots`` (``None``: exact), shot noise
    restarted from ``seed``. Returns the number of measurements changed."""
    if shots is not None and int(shots) < 1:
        raise ValueError(f"shots must be None (exact) or >= 1, got {shots}")
    found = [m for m in model.modules() if isinstance(m, Measurement)]
    for m in found:
        m.shots = None if shots is None else int(shots)
        m.reseed(seed)
    return len(found)


@contextlib.contextmanager
def noisy(model: nn.Module, noise: NoiseModel | str | None = None, shots: int | None = None,
          seed: int | None = None, method: str = "density", trajectories: int = 100
          ) -> Iterator[nn.Module]:
    """Within the block, ``model`` runs under ``noise`` with ``shots`` (``None``: exact),
    trajectories and shot noise seeded by ``seed``; afterwards everything is restored."""
    circuits = _circuits(model, required=noise is not None)
    meas = [m for m in model.modules() if isinstance(m, Measurement)]
    if shots is not None and not meas:
        raise ValueError(f"{type(model).__name__} has no qdistill measurement to sample "
                         "shots from (build its circuit from qdistill.quantum)")
    saved_noise = [m.noise for m in circuits]
    saved_meas = [(m.shots, m.seed, dict(m._generators)) for m in meas]
    try:
        set_noise(model, noise, method, trajectories, seed)
        set_shots(model, shots, seed)
        yield model
    finally:
        for m, sim in zip(circuits, saved_noise, strict=True):
            m.noise = sim
        for m, (s, sd, gens) in zip(meas, saved_meas, strict=True):
            m.shots, m.seed, m._generators = s, sd, gens
