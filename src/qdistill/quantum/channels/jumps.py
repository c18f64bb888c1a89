"""Any channel in a trajectory simulation, from its Kraus matrices alone: a quantum
jump. Kraus matrix ``K_k`` is drawn with probability ``q_k = ||K_k psi||^2`` (from the
reduced density matrix of the channel's wires, ``q_k = Tr(K_k^+ K_k rho_W)``) and
applied as ``K_k psi / sqrt(q_k)`` with ``q`` detached for autograd (importance weights:
``E[|psi><psi|] = rho`` and the expected gradient is exact).

Fast path, chosen from the Kraus matrices: when every ``K_k^+ K_k = c_k I`` (a mixed
unitary such as depolarizing) the ``q_k = c_k`` are constants, nothing is read from the
state, and a draw of ``K_0 = I`` leaves it alone (skipped on the CPU). When every
``K_k^+ K_k`` is diagonal (amplitude damping) only the wires' populations are read.

One uniform draw per application; ``K_1, ..., K_{m-1}, K_0`` are laid out along
``[0, 1)`` in that order, so a rate-``p`` Pauli error is ``u < p`` and a damping jump is
``u < gamma P(1)``: the draws of the per-channel code this replaced, up to float rounding.
No host sync on a GPU: only the CPU checks whether any error was drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from ..state import apply_matrix
from .base import Channel

__all__ = ["Jump", "jump", "prepare_jump"]


class Jump(NamedTuple):
    """One channel's Kraus matrices prepared for quantum jumps, in draw order
    ``K_1, ..., K_{m-1}, K_0`` (so a rate-``p`` error is ``u < p``, as before)."""

    chan: Channel
    mats: torch.Tensor  # (m, d, d): K_k, or K_k / sqrt(q_k) when q is constant
    cum: torch.Tensor | None  # (m,) float64 cumulative q when constant, else None
    effects: torch.Tensor  # (m, d, d) K_k^+ K_k, or (m, d) float64 diagonals if diagonal
    skip: bool  # constant q and K_0 ~ I: drawing K_0 leaves the state alone


def prepare_jump(chan: Channel, rate: float, dtype: torch.dtype, device: torch.device
                 ) -> Jump:
    """Classified once per run, on the CPU in complex128 (no device sync per gate)."""
    k = torch.stack(chan.kraus(rate, torch.complex128, "cpu"))
    k = torch.cat([k[1:], k[:1]])
    e = k.mH @ k
    eye = torch.eye(k.shape[-1], dtype=torch.complex128)
    c = e.diagonal(dim1=1, dim2=2).real.mean(1)
    if torch.allclose(e, c[:, None, None] * eye, atol=1e-12):  # mixed unitary
        u = k / c.clamp_min(1e-300).sqrt()[:, None, None]
        skip = bool(torch.allclose(u[-1], u[-1, 0, 0] * eye, atol=1e-12))
        cum = c.cumsum(0) / c.sum()
        return Jump(chan, u.to(device, dtype), cum.to(device), e.to(device, dtype), skip)
    diagonal = torch.allclose(e, torch.diag_embed(e.diagonal(dim1=1, dim2=2)), atol=1e-12)
    effects = e.diagonal(dim1=1, dim2=2).real if diagonal else e.to(dtype)
    return Jump(chan, k.to(device, dtype), None, effects.to(device), False)


def jump(psi: torch.Tensor, wires: Sequence[int], jp: Jump, gen: torch.Generator
         ) -> torch.Tensor:
    """One quantum jump of ``jp``'s channel on ``wires`` for every trajectory."""
    m, dev, last = psi.shape[0], psi.device, jp.mats.shape[0] - 1
    u = torch.rand(m, generator=gen, device=dev, dtype=torch.float64)
    if jp.cum is not None:
        idx = torch.searchsorted(jp.cum, u, right=True).clamp_(max=last)
        # When every draw is K_0 = I the gather is skipped on the CPU; on a GPU that test
        # would be a host sync per gate, so the identity is applied instead.
        if jp.skip and dev.type == "cpu" and not bool((idx != last).any()):
            return psi
        return apply_matrix(psi, jp.mats[idx], list(wires))
    d = 1 << len(wires)
    x = psi.detach().movedim([w + 1 for w in wires], list(range(-len(wires), 0)))
    x = x.reshape(m, -1, d)
    if jp.effects.dim() == 2:  # diagonal K^+ K: the wires' populations suffice
        q = (x.real.square() + x.imag.square()).sum(1).double() @ jp.effects.mT
    else:  # q_k = Tr(K_k^+ K_k rho_W), rho_W = Tr_rest |psi><psi|
        rho = x.mT @ x.conj()
        q = torch.einsum("kab,mba->mk", jp.effects, rho).real.double()
    cum = q.cumsum(1)
    idx = torch.searchsorted(cum, (u * cum[:, -1])[:, None], right=True).clamp_(max=last)
    scale = q.gather(1, idx).clamp_min(1e-30).rsqrt()
    idx = idx.squeeze(1)
    return apply_matrix(psi, jp.mats[idx] * scale.to(psi.dtype)[:, :, None], list(wires))
