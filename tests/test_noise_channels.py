"""The noise-channel registry: every channel's Kraus set is trace preserving, and a
channel defined here (one class plus one table entry, as the recipe in
``qdistill.quantum.channels`` says) parses, runs in both simulators, matches PennyLane's
``default.mixed`` and is sampled correctly by trajectories, with no other change.

Two toy channels: ``dephasing`` (``qml.PhaseFlip``, per wire: a mixed unitary, the
constant-probability trajectory path) and ``toy2`` (a fixed random 2-qubit channel whose
``K^+ K`` are neither multiples of ``I`` nor diagonal: the general path, which reads
the reduced density matrix of the two wires).
"""

from __future__ import annotations

import copy
import math
import pickle
import random

import numpy as np
import pytest
import torch

from qdistill.quantum.channels import CHANNELS, Channel
from qdistill.quantum.layer import build_quantum_layer
from qdistill.quantum.noise import (
    NoiseModel,
    NoisySimulator,
    density_matrix,
    readout_flip,
    set_noise,
)

qml = pytest.importorskip("pennylane")
from test_noise import PL, _depolarizing2_kraus, _random_circuit, rho_and_probs  # noqa: E402

C128, F64 = torch.complex128, torch.float64


class PhaseFlip(Channel):
    """``rho -> (1 - p) rho + p Z rho Z`` on each wire: ``qml.PhaseFlip(p)``."""

    key = "dephasing"
    wires = "each"

    def kraus(self, rate, dtype=C128, device=None):
        z = torch.tensor([[1, 0], [0, -1]], dtype=dtype, device=device)
        return [math.sqrt(1 - rate) * torch.eye(2, dtype=dtype, device=device),
                math.sqrt(rate) * z]


def _isometry_blocks() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(12, 4)) + 1j * rng.normal(size=(12, 4))
    q, _ = np.linalg.qr(a)  # (12, 4), q^+ q = I: three 4 x 4 blocks with sum V^+ V = I
    return [q[4 * i:4 * i + 4] for i in range(3)]


class Toy2(Channel):
    """``(1 - r) rho + r sum_k V_k rho V_k^+`` on both wires of a 2-qubit gate, ``V_k``
    fixed random blocks of an isometry: ``qml.QubitChannel`` with these matrices."""

    key = "toy2"
    wires = 2
    blocks = _isometry_blocks()

    def kraus(self, rate, dtype=C128, device=None):
        eye = torch.eye(4, dtype=dtype, device=device)
        return [math.sqrt(1 - rate) * eye] + [
            math.sqrt(rate) * torch.tensor(v, dtype=dtype, device=device) for v in self.blocks]


@pytest.fixture
def toys(monkeypatch):
    monkeypatch.setitem(CHANNELS, "dephasing", PhaseFlip())
    monkeypatch.setitem(CHANNELS, "toy2", Toy2())


SPEC = "depolarizing=0.03,depolarizing2=0.08,damping=0.04,dephasing=0.1,toy2=0.3,readout=0.05"


@pytest.mark.parametrize("key", list(CHANNELS))
@pytest.mark.parametrize("dtype", [torch.complex64, C128])
def test_every_channel_is_trace_preserving_and_documented(key, dtype):
    chan = CHANNELS[key]
    assert chan.key == key and chan.wires in (1, 2, "each")
    assert "PennyLane" in type(chan).__doc__ and "Qiskit" in type(chan).__doc__
    d = 4 if chan.wires == 2 else 2
    for rate in (0.0, 0.03, 0.5, 1.0):
        k = torch.stack(chan.kraus(rate, dtype, "cpu"))
        assert k.dtype == dtype and k.shape[1:] == (d, d)
        total = (k.mH @ k).sum(0)
        assert torch.allclose(total, torch.eye(d, dtype=dtype), atol=1e-6), (rate, total)


def test_toy_channels_are_trace_preserving(toys):
    for chan in (CHANNELS["dephasing"], CHANNELS["toy2"]):
        k = torch.stack(chan.kraus(0.3))
        assert torch.allclose((k.mH @ k).sum(0), torch.eye(k.shape[-1], dtype=C128))


def test_a_registered_channel_is_a_spec_key_and_an_attribute(toys):
    m = NoiseModel.parse(SPEC)
    assert m.dephasing == 0.1 and m.toy2 == 0.3 and m.damping == 0.04 and m.readout == 0.05
    assert m.spec() == SPEC and NoiseModel.parse(m.spec()) == m
    assert [c.key for c, _ in m.channels()] == ["depolarizing", "depolarizing2", "damping",
                                                 "dephasing", "toy2"]
    assert NoiseModel.parse("preset:ibm-heron,dephasing=0.01").dephasing == 0.01
    assert NoiseModel(depolarizing=0.1).dephasing == 0.0
    with pytest.raises(ValueError, match="valid keys: .*damping, dephasing, toy2, readout"):
        NoiseModel.parse("dephase=0.1")
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        NoiseModel.parse("dephasing=2")


def test_unregistered_keys_are_refused_and_the_model_is_a_frozen_value():
    with pytest.raises(ValueError, match="unknown item 'dephasing=0.1'"):
        NoiseModel.parse("dephasing=0.1")
    with pytest.raises(TypeError, match="unknown rates dephasing"):
        NoiseModel(dephasing=0.1)
    m = NoiseModel(0.01, 0.02, 0.001, 0.02)  # the original field order still works
    assert m == NoiseModel(depolarizing=0.01, depolarizing2=0.02, damping=0.001,
                           readout=0.02)
    assert m.spec() == "depolarizing=0.01,depolarizing2=0.02,damping=0.001,readout=0.02"
    assert m.rates == {"depolarizing": 0.01, "depolarizing2": 0.02, "damping": 0.001}
    assert pickle.loads(pickle.dumps(m)) == m == copy.deepcopy(m)
    assert len({m, NoiseModel.parse(m.spec())}) == 1 and m.replace(readout=0).readout == 0
    with pytest.raises(AttributeError):
        m.damping = 0.5
    with pytest.raises(AttributeError):
        del m.readout
    with pytest.raises(AttributeError, match="no attribute 'dampng'"):
        _ = m.dampng
    assert repr(NoiseModel(damping=0.5)) == ("NoiseModel(depolarizing=0.0, depolarizing2=0.0,"
                                             " damping=0.5, readout=0.0)")


def _pennylane_probs(n, gates, b, noise: NoiseModel) -> tuple[np.ndarray, np.ndarray]:
    """The same circuit in PennyLane, channels written from their definitions."""
    dev = qml.device("default.mixed", wires=n)
    toy = [k.numpy() for k in Toy2().kraus(noise.toy2)]

    def body():
        for g in gates:
            args = [float(p[b]) if p.dim() else float(p) for p in g.params]
            PL[g.name](*args, wires=list(g.wires))
            if len(g.wires) == 1:
                qml.DepolarizingChannel(noise.depolarizing, wires=g.wires[0])
            else:
                qml.QubitChannel(_depolarizing2_kraus(noise.depolarizing2), wires=list(g.wires))
            for w in g.wires:
                qml.AmplitudeDamping(noise.damping, wires=w)
            for w in g.wires:
                qml.PhaseFlip(noise.dephasing, wires=w)
            if len(g.wires) == 2:
                qml.QubitChannel(toy, wires=list(g.wires))

    return rho_and_probs(dev, body, n, noise.readout)


@pytest.mark.parametrize("n", [2, 3])
def test_registered_channels_match_pennylane_default_mixed(toys, n):
    rng = random.Random(10 + n)
    torch.manual_seed(n)
    noise = NoiseModel.parse(SPEC)
    gates = _random_circuit(n, rng, batch=2, length=12 + 2 * n)
    rho = density_matrix(gates, n, 2, noise, dtype=C128)
    probs = readout_flip(NoisySimulator(noise).probabilities(gates, n, 2), noise.readout)
    for b in range(2):
        pl_rho, pl_probs = _pennylane_probs(n, gates, b, noise)
        np.testing.assert_allclose(rho[b].numpy(), pl_rho, atol=1e-10)
        np.testing.assert_allclose(probs[b].numpy(), pl_probs, atol=1e-10)
    # The toys change the result (so the comparison above saw them).
    base = density_matrix(gates, n, 2, NoiseModel.parse(SPEC.replace(",dephasing=0.1,toy2=0.3",
                                                                     "")), dtype=C128)
    assert (rho - base).abs().max() > 1e-2


def test_registered_channels_in_trajectories_converge_and_are_seeded(toys):
    torch.manual_seed(4)
    n, t = 3, 3000
    layer = build_quantum_layer(n, encoding="angle", ansatz="hardware_efficient",
                                n_layers=2, measurement="probs", dtype=C128)
    x = torch.rand(2, n, dtype=F64) * 3
    gates = layer.gates(x)
    for spec in ("dephasing=0.2", "toy2=0.3", SPEC):
        exact = NoisySimulator(spec).probabilities(gates, n, 2)
        sims = [NoisySimulator(spec, "trajectories", t, seed=s) for s in (7, 7, 8)]
        est = [s.probabilities(gates, n, 2) for s in sims]
        assert torch.equal(est[0], est[1]) and not torch.equal(est[0], est[2])
        # Standard error of a mean of T draws of |psi|^2 in [0, 1]: <= sqrt(p (1 - p) / T).
        tol = 5 * torch.sqrt(exact * (1 - exact) / t) + 1e-3
        assert ((est[0] - exact).abs() <= tol).all(), (spec, (est[0] - exact).abs().max())


def test_trajectory_gradients_through_the_general_jump_are_unbiased(toys):
    torch.manual_seed(5)
    layer = build_quantum_layer(3, encoding="angle", ansatz="hardware_efficient",
                                measurement="probs", dtype=C128)
    layer.ansatz.weights.data = layer.ansatz.weights.data.double()
    x = torch.rand(2, 3, dtype=F64)
    target = torch.arange(8, dtype=F64)

    def grad(**kw):
        layer.ansatz.weights.grad = None
        set_noise(layer, "toy2=0.3,dephasing=0.1", **kw)
        (layer(x) * target).sum().backward()
        return layer.ansatz.weights.grad.clone()

    exact = grad()
    runs = torch.stack([grad(method="trajectories", trajectories=250, seed=s)
                        for s in range(16)])
    # The mean over 16 seeds is within 5 standard errors (t with 15 degrees of freedom:
    # a 2e-4 chance per weight); exactly-zero gradients are zero up to rounding.
    err = (runs.mean(0) - exact).abs()
    assert (err <= 5 * runs.std(0) / math.sqrt(len(runs)) + 1e-9).all(), err
