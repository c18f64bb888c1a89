"""Measurements: probabilities, Pauli-Z expectations, finite shots, parameter shift.

Exact mode returns ``|psi|^2`` (marginalised onto the requested wires) or
``<Z_w> = P(bit_w = 0) - P(bit_w = 1)``; both are differentiable by autograd.

Finite shots (``shots=S``) draw ``S`` basis states per sample from the exact
distribution (``torch.multinomial`` with a seeded ``torch.Generator``) and return the
observed frequencies. Sampling has no gradient, so the returned tensor is a
*straight-through estimator*::

    freq_st = p + (freq - p).detach()

Forward value: the sampled frequencies. Backward: the gradient of the exact ``p``.
Since ``E[freq] = p`` and ``p`` is what the gradient is taken of, the gradient is that
of the expected loss for losses linear in ``freq`` (unbiased), and a consistent
estimate (bias O(1/S)) for smooth non-linear losses. A real device could only give
the parameter-shift gradient of the sampled values; :func:`parameter_shift` computes
that (with the correct 1/2 factor, unlike the paper's notebooks, which used shift pi/4
without it and so scaled gradients by sqrt(2)).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import lru_cache

import torch
from torch import nn

from .state import bit_table, layout_index, memory_order

__all__ = [
    "ExpvalZ",
    "Measurement",
    "Probs",
    "expval_z",
    "marginal_probabilities",
    "parameter_shift",
    "probabilities",
    "sample_counts",
    "sample_frequencies",
    "z_signs",
]

# Cap on the int64 index buffer torch.multinomial fills at once (elements).
_SAMPLE_CHUNK = 1 << 22


def _wires(wires: Sequence[int] | None, n: int) -> list[int]:
    wires = list(range(n)) if wires is None else [int(w) for w in wires]
    if len(set(wires)) != len(wires) or any(not 0 <= w < n for w in wires):
        raise ValueError(f"wires {wires} invalid for {n} qubits")
    return wires


def probabilities(state: torch.Tensor, wires: Sequence[int] | None = None) -> torch.Tensor:
    """Basis-state probabilities ``(B, 2**k)`` of ``wires`` (all wires if ``None``).

    Index ``j`` of the result reads ``wires[0]`` as its most significant bit (as
    ``qml.probs(wires=...)``); other wires are summed out.
    """
    return _marginal(state.real.square() + state.imag.square(), wires)


def _marginal(p: torch.Tensor, wires: Sequence[int] | None) -> torch.Tensor:
    """``p (B, 2, ..., 2)`` -> ``(B, 2**k)`` over ``wires``, ``wires[0]`` the MSB."""
    n = p.dim() - 1
    wires = _wires(wires, n)
    others = [w + 1 for w in range(n) if w not in wires]
    if others:
        p = p.sum(dim=others)
    ordered = sorted(wires)
    if ordered != wires:
        p = p.permute(0, *[1 + ordered.index(w) for w in wires])
    return p.reshape(p.shape[0], -1)


def marginal_probabilities(probs: torch.Tensor, wires: Sequence[int] | None = None
                           ) -> torch.Tensor:
    """Probabilities ``(B, 2**n)`` of all wires -> ``(B, 2**k)`` of ``wires``, ordered as
    :func:`probabilities` orders them (``wires[0]`` the most significant bit)."""
    n = int(round(math.log2(probs.shape[-1])))
    return _marginal(probs.reshape(probs.shape[0], *([2] * n)), wires)


def z_signs(n_qubits: int, device: torch.device | str | None = None,
            dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(2**n, n)`` matrix of Z eigenvalues: ``+1`` where the wire's bit is 0, else ``-1``."""
    return _z_signs(n_qubits, str(torch.device(device or "cpu")), dtype)


@lru_cache(maxsize=64)
def _z_signs(n_qubits: int, device: str, dtype: torch.dtype) -> torch.Tensor:
    return (1 - 2 * bit_table(n_qubits, device)).to(dtype)


def expval_z(state: torch.Tensor, wires: Sequence[int] | None = None) -> torch.Tensor:
    """``<Z_w>`` for each wire in ``wires``: shape ``(B, len(wires))``.

    Computed as one GEMM of the probabilities with the sign table (one pass over the
    state for all wires) instead of one reduction per wire.
    """
    n = state.dim() - 1
    wires = _wires(wires, n)
    order = memory_order(state)
    if order is None:
        p = probabilities(state, wires)
        return p @ z_signs(len(wires), p.device, p.dtype)
    # Read the (possibly permuted) state in memory order, no copy: memory position j
    # holds logical basis index m_inv[j], whose Z signs are the rows m_inv of the table.
    p = state.real.square() + state.imag.square()
    p = p.permute(0, *[w + 1 for w in order]).reshape(p.shape[0], -1)
    return p @ _memory_signs(tuple(order), tuple(wires), str(p.device), p.dtype)


@lru_cache(maxsize=256)
def _memory_signs(order: tuple[int, ...], wires: tuple[int, ...], device: str,
                  dtype: torch.dtype) -> torch.Tensor:
    _, m_inv = layout_index(order, device)
    return z_signs(len(order), device, dtype)[m_inv][:, list(wires)].contiguous()


def sample_counts(probs: torch.Tensor, shots: int,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Counts ``(B, K)`` of ``shots`` draws per row from ``probs`` (rows need not sum to 1).

    Same generator state -> same counts. Draws are made in chunks so the index buffer
    stays below ``2**22`` entries whatever ``B * shots`` is.
    """
    if shots < 1:
        raise ValueError(f"shots must be >= 1, got {shots}")
    p = probs.detach().clamp_min(0)
    counts = torch.zeros_like(p)
    per_chunk = max(1, _SAMPLE_CHUNK // max(1, p.shape[0]))
    done = 0
    while done < shots:
        m = min(per_chunk, shots - done)
        idx = torch.multinomial(p, m, replacement=True, generator=generator)
        counts.scatter_add_(1, idx, torch.ones(idx.shape, dtype=p.dtype, device=p.device))
        done += m
    return counts


def sample_frequencies(probs: torch.Tensor, shots: int,
                       generator: torch.Generator | None = None,
                       straight_through: bool = True) -> torch.Tensor:
    """Sampled frequencies ``counts / shots``; with ``straight_through`` the backward
    pass is the gradient of ``probs`` (see the module docstring)."""
    freq = sample_counts(probs, shots, generator) / shots
    if straight_through:
        return probs + (freq - probs).detach()
    return freq


class SeededSampling:
    """Per-device ``torch.Generator`` s for sampling (shots, noise trajectories).

    ``seed=None`` draws the seed from torch's global RNG the first time samples are
    needed, so ``torch.manual_seed`` fixes it; generators advance from call to call
    (fresh noise each step, same sequence per seed); :meth:`reseed` restarts them. One
    generator per device keeps the CPU and CUDA streams apart.
    """

    seed: int | None
    _generators: dict[str, torch.Generator]

    def reseed(self, seed: int | None) -> None:
        """Restart the sampling sequence from ``seed`` (``None``: draw from torch RNG)."""
        self.seed = seed
        self._generators.clear()

    def generator(self, device: torch.device) -> torch.Generator:
        """The generator used for sampling on ``device`` (created on first use)."""
        key = str(device)
        if key not in self._generators:
            if self.seed is None:
                self.seed = int(torch.randint(0, 2**62, (1,)).item())
            self._generators[key] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[key]


class Measurement(SeededSampling, nn.Module):
    """Base for measurements: holds ``wires``, ``shots`` and a per-device generator.

    ``seed=None`` draws the seed from torch's global RNG the first time samples are
    needed, so ``torch.manual_seed`` makes shot noise reproducible; an int fixes it.
    Generators advance from call to call (fresh noise each step, same sequence per seed);
    :meth:`reseed` restarts the sequence.
    """

    def __init__(self, wires: Sequence[int] | None = None, shots: int | None = None,
                 seed: int | None = None) -> None:
        super().__init__()
        if shots is not None and shots < 1:
            raise ValueError(f"shots must be None (exact) or >= 1, got {shots}")
        self.wires = None if wires is None else [int(w) for w in wires]
        self.shots = shots
        self.seed = seed
        self._generators: dict[str, torch.Generator] = {}

    def _probs(self, state: torch.Tensor) -> torch.Tensor:
        p = probabilities(state, self.wires)
        if self.shots is None:
            return p
        return sample_frequencies(p, self.shots, self.generator(p.device))

    def from_probabilities(self, p: torch.Tensor) -> torch.Tensor:
        """The measurement's output given the probabilities ``(B, 2**k)`` of its wires
        (e.g. computed under noise): frequencies of ``shots`` draws if shots are set
        (straight-through gradient), then the subclass's read-out."""
        if self.shots is not None:
            p = sample_frequencies(p, self.shots, self.generator(p.device))
        return self._readout(p)

    def _readout(self, p: torch.Tensor) -> torch.Tensor:
        return p

    def extra_repr(self) -> str:
        return f"wires={self.wires}, shots={self.shots}, seed={self.seed}"


class Probs(Measurement):
    """State ``(B, 2, ..., 2)`` -> probabilities ``(B, 2**k)`` (frequencies with shots)."""

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self._probs(state)

    def output_size(self, n_qubits: int) -> int:
        return 2 ** len(_wires(self.wires, n_qubits))


class ExpvalZ(Measurement):
    """State -> ``<Z_w>`` ``(B, k)``; with shots, estimated from one set of joint samples
    of the measured wires (as a device would), straight-through gradient."""

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        if self.shots is None:
            return expval_z(state, self.wires)
        p = self._probs(state)
        k = int(round(math.log2(p.shape[-1])))
        return p @ z_signs(k, p.device, p.dtype)

    def output_size(self, n_qubits: int) -> int:
        return len(_wires(self.wires, n_qubits))

    def _readout(self, p: torch.Tensor) -> torch.Tensor:
        k = int(round(math.log2(p.shape[-1])))
        return p @ z_signs(k, p.device, p.dtype)


def parameter_shift(fn: Callable[[torch.Tensor], torch.Tensor], params: torch.Tensor,
                    shift: float = math.pi / 2) -> torch.Tensor:
    """Jacobian of ``fn`` at ``params`` by the two-term parameter-shift rule.

    For a gate ``exp(-i theta P / 2)`` with ``P`` a Pauli word (RX, RY, RZ, and each angle
    of Rot / U3) any expectation or probability is ``a + b cos(theta) + c sin(theta)``,
    so exactly::

        d f / d theta = [f(theta + s) - f(theta - s)] / (2 sin s),   s = pi/2 -> /2.

    Valid when every entry of ``params`` enters exactly one such gate (not for CRX/CRY/
    CRZ, which need a four-term rule, nor for a parameter reused by two gates, such as
    ``rx_i`` in :class:`~qdistill.quantum.ansatz.PaperV2Block`).

    Args:
        fn: maps a tensor shaped like ``params`` to an output tensor (any shape).
        params: the point; not modified.
        shift: the shift ``s`` (any value with ``sin s != 0`` gives the exact derivative).

    Returns:
        ``(*fn(params).shape, *params.shape)``.
    """
    base = params.detach()
    flat = base.reshape(-1)
    rows = []
    with torch.no_grad():
        for i in range(flat.numel()):
            step = torch.zeros_like(flat)
            step[i] = shift
            plus = fn((flat + step).view_as(base))
            minus = fn((flat - step).view_as(base))
            rows.append((plus - minus) / (2 * math.sin(shift)))
    jac = torch.stack(rows, dim=-1)
    return jac.reshape(*jac.shape[:-1], *base.shape)
