"""Noise models: density matrices against PennyLane default.mixed, trajectories against
the density matrix, the layers' gate lists against their own circuits, gradients, errors.

PennyLane circuits are written here from the channels' documented definitions; the
two-qubit depolarizing channel (absent from PennyLane as a named channel) is built as
16 Kraus matrices in NumPy and passed to ``qml.QubitChannel``.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import qdistill.quantum as q
from qdistill.quantum.layer import Gate, build_quantum_layer
from qdistill.quantum.noise import (
    DEVICES,
    PRESETS,
    NoiseModel,
    NoisySimulator,
    density_matrix,
    noisy,
    set_noise,
    trajectory_probabilities,
)

qml = pytest.importorskip("pennylane")

C128, F64 = torch.complex128, torch.float64
PL = {"h": qml.Hadamard, "x": qml.PauliX, "y": qml.PauliY, "z": qml.PauliZ, "rx": qml.RX,
      "ry": qml.RY, "rz": qml.RZ, "rot": qml.Rot, "u3": qml.U3, "cnot": qml.CNOT,
      "cx": qml.CNOT, "cz": qml.CZ, "crx": qml.CRX, "cry": qml.CRY, "crz": qml.CRZ,
      "swap": qml.SWAP}


def _depolarizing2_kraus(p: float) -> list[np.ndarray]:
    """(1 - p) rho + p/15 sum_{P != II} P rho P as Kraus matrices."""
    paulis = [np.eye(2), np.array([[0, 1], [1, 0]]), np.array([[0, -1j], [1j, 0]]),
              np.diag([1, -1])]
    words = [np.kron(a, b) for a, b in itertools.product(paulis, repeat=2)]
    return [math.sqrt(1 - p) * words[0]] + [math.sqrt(p / 15) * w for w in words[1:]]


def _random_circuit(n: int, rng: random.Random, batch: int, length: int) -> list[Gate]:
    names = [g for g in PL if q.GATES[g][0] <= n]
    seq = names + [rng.choice(names) for _ in range(max(0, length - len(names)))]
    rng.shuffle(seq)
    out = []
    for name in seq:
        k = q.GATES[name][1]
        # Per-sample angles for some gates, one shared angle for others.
        per_sample = rng.random() < 0.5
        params = tuple(torch.rand(batch, dtype=F64) * 6 - 3 if per_sample
                       else torch.tensor(rng.uniform(-3, 3), dtype=F64) for _ in range(k))
        out.append(Gate(name, tuple(rng.sample(range(n), q.GATES[name][0])), params))
    return out


def _pennylane(n, gates, b, noise: NoiseModel):
    dev = qml.device("default.mixed", wires=n)

    def body():
        for g in gates:
            args = [float(p[b]) if p.dim() else float(p) for p in g.params]
            PL[g.name](*args, wires=list(g.wires))
            if len(g.wires) == 1 and noise.depolarizing:
                qml.DepolarizingChannel(noise.depolarizing, wires=g.wires[0])
            if len(g.wires) == 2 and noise.depolarizing2:
                qml.QubitChannel(_depolarizing2_kraus(noise.depolarizing2), wires=list(g.wires))
            for w in g.wires if noise.damping else ():
                qml.AmplitudeDamping(noise.damping, wires=w)

    return rho_and_probs(dev, body, n, noise.readout)


def rho_and_probs(dev, body, n, readout):
    """(density matrix, readout-flipped probabilities) of ``body()`` on ``dev``."""
    @qml.qnode(dev)
    def rho():
        body()
        return qml.density_matrix(wires=list(range(n)))

    @qml.qnode(dev)
    def probs():
        body()
        for w in range(n):
            qml.BitFlip(readout, wires=w)
        return qml.probs(wires=list(range(n)))

    return np.asarray(rho()), np.asarray(probs())


NOISE = NoiseModel(depolarizing=0.03, depolarizing2=0.08, damping=0.04, readout=0.05)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_density_matches_pennylane_default_mixed(n):
    rng = random.Random(n)
    torch.manual_seed(n)
    gates = _random_circuit(n, rng, batch=2, length=12 + 2 * n)
    rho = density_matrix(gates, n, 2, NOISE, dtype=C128)
    sim = NoisySimulator(NOISE)
    probs = q.noise.readout_flip(sim.probabilities(gates, n, 2), NOISE.readout)
    for b in range(2):
        pl_rho, pl_probs = _pennylane(n, gates, b, NOISE)
        np.testing.assert_allclose(rho[b].numpy(), pl_rho, atol=1e-5)
        np.testing.assert_allclose(probs[b].numpy(), pl_probs, atol=1e-5)
    assert torch.allclose(rho.diagonal(dim1=1, dim2=2).real.sum(1), torch.ones(2, dtype=F64))


LAYERS = [
    dict(encoding="amplitude", ansatz="hardware_efficient", n_layers=2),
    dict(encoding="amplitude", ansatz="qcnn", n_layers=1),
    dict(encoding="amplitude", ansatz="paper_v2"),
    dict(encoding="angle", ansatz="hardware_efficient", rotation="y", hadamard=True),
    dict(encoding="dense", ansatz="strongly_entangling", n_layers=2),
    dict(encoding="angle", ansatz="hardware_efficient", n_layers=2, reupload=True),
]


@pytest.mark.parametrize("kwargs", LAYERS, ids=lambda k: f"{k['encoding']}-{k['ansatz']}")
def test_noiseless_density_is_the_layers_own_state(kwargs):
    torch.manual_seed(0)
    n = 4
    layer = build_quantum_layer(n, dtype=C128, **kwargs)
    x = torch.randn(3, {"amplitude": 16, "angle": 4, "dense": 8}[kwargs["encoding"]], dtype=F64)
    gates = layer.gates(x)
    rho = density_matrix(gates, n, 3, None, dtype=C128)
    psi = layer.state(x).reshape(3, -1)
    assert torch.allclose(rho, psi[:, :, None] * psi.conj()[:, None, :], atol=1e-10)
    # The batched list is exactly ops(x[i]) row by row (names, wires, angles).
    ops = layer.ops(x[1])
    assert [(g.name, g.wires) for g in gates] == [({"u": "u3"}.get(o.name, o.name), o.wires)
                                                  for o in ops]
    # Noiseless trajectories are the statevector itself.
    gen = torch.Generator().manual_seed(0)
    p = trajectory_probabilities(gates, n, 3, NoiseModel(), 2, gen, C128)
    assert torch.allclose(p, psi.abs().square(), atol=1e-12)


def test_paper_v1_circuit_gates_and_noise():
    from qdistill.students import V1Circuit

    circ = V1Circuit(3)
    theta = torch.rand(4, 3, dtype=F64) * 6 - 3
    exact = circ(theta)
    set_noise(circ, "none")
    assert torch.allclose(circ(theta), exact, atol=1e-12)
    # Depolarizing after H and RY on each qubit: closed form per bit. P(1) exact is
    # (1 + sin t)/2; each channel shrinks the Bloch vector by 1 - 4p/3.
    set_noise(circ, NoiseModel(depolarizing=0.1))
    shrink = (1 - 4 * 0.1 / 3) ** 2
    p1 = (1 + shrink * torch.sin(theta)) / 2  # H|0> = +x; RY keeps the xz plane
    bits = torch.tensor(list(itertools.product([0, 1], repeat=3)), dtype=F64)
    want = torch.prod(torch.where(bits.bool()[None], p1[:, None], 1 - p1[:, None]), -1)
    assert torch.allclose(circ(theta), want, atol=1e-12)


def test_trajectories_converge_to_density_and_are_seeded():
    torch.manual_seed(1)
    n, t = 3, 3000
    layer = build_quantum_layer(n, encoding="angle", ansatz="hardware_efficient",
                                n_layers=2, measurement="probs", dtype=C128)
    x = torch.rand(2, n, dtype=F64) * 3
    gates = layer.gates(x)
    exact = NoisySimulator(NOISE).probabilities(gates, n, 2)
    sims = [NoisySimulator(NOISE, "trajectories", t, seed=s) for s in (7, 7, 8)]
    est = [s.probabilities(gates, n, 2) for s in sims]
    assert torch.equal(est[0], est[1]) and not torch.equal(est[0], est[2])
    # Standard error of a mean of T draws of |psi|^2 in [0, 1] is at most
    # sqrt(p (1 - p) / T); 5 standard errors, elementwise.
    tol = 5 * torch.sqrt(exact * (1 - exact) / t) + 1e-3
    assert ((est[0] - exact).abs() <= tol).all(), (est[0] - exact).abs().max()
    # The same through the layer: readout + marginal + measurement.
    set_noise(layer, NOISE, method="trajectories", trajectories=t, seed=7)
    out = layer(x)
    assert torch.allclose(out.sum(1), torch.ones(2, dtype=F64))


def test_readout_scales_expval_and_noise_zero_is_exact():
    torch.manual_seed(2)
    layer = build_quantum_layer(3, encoding="dense", ansatz="strongly_entangling",
                                dtype=C128)
    x = torch.randn(4, 6, dtype=F64)
    exact = layer(x)
    with noisy(layer, "depolarizing=0,readout=0"):
        assert torch.allclose(layer(x), exact, atol=1e-12)
    with noisy(layer, "readout=0.1"):
        assert torch.allclose(layer(x), 0.8 * exact, atol=1e-12)
    assert layer.noise is None and torch.equal(layer(x), exact)  # restored


def test_gradients_density_finite_difference_and_trajectories_unbiased():
    torch.manual_seed(3)
    layer = build_quantum_layer(3, encoding="angle", ansatz="hardware_efficient",
                                measurement="probs", dtype=C128)
    layer.ansatz.weights.data = layer.ansatz.weights.data.double()
    x = torch.rand(2, 3, dtype=F64, requires_grad=True)
    target = torch.arange(8, dtype=F64)
    noise = NoiseModel(depolarizing=0.05, depolarizing2=0.1, damping=0.2, readout=0.03)

    def loss():
        return (layer(x) * target).sum()

    set_noise(layer, noise)
    loss().backward()
    grad = layer.ansatz.weights.grad.clone()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with torch.no_grad():  # central finite difference on one weight
        w = layer.ansatz.weights
        h = 1e-6
        w[0, 1, 0] += h
        up = loss()
        w[0, 1, 0] -= 2 * h
        down = loss()
        w[0, 1, 0] += h
    assert float(grad[0, 1, 0]) == pytest.approx(float((up - down) / (2 * h)), abs=1e-6)
    # Trajectory gradients are unbiased (damping needs the importance weights for that):
    # the mean over 8 seeds is within 4 standard errors of the exact gradient.
    runs = []
    for seed in range(8):
        layer.ansatz.weights.grad = None
        set_noise(layer, noise, method="trajectories", trajectories=500, seed=seed)
        loss().backward()
        runs.append(layer.ansatz.weights.grad.clone())
    runs = torch.stack(runs)
    err = (runs.mean(0) - grad).abs()
    assert (err <= 4 * runs.std(0) / math.sqrt(len(runs)) + 1e-9).all(), err


def test_parse_presets_and_errors():
    m = NoiseModel.parse("depolarizing=0.01,depolarizing2=0.02,damping=0.001,readout=0.02")
    assert m == NoiseModel(0.01, 0.02, 0.001, 0.02)
    assert NoiseModel.parse(m.spec()) == m and NoiseModel.parse("none").noiseless
    heron = NoiseModel.parse("preset:ibm-heron")
    assert heron == PRESETS["ibm-heron"] == NoiseModel.preset("ibm-heron")
    assert NoiseModel.parse("preset:ibm-heron,readout=0").readout == 0
    assert heron.depolarizing2 == pytest.approx(1.25 * DEVICES["ibm-heron"].error_2q)
    for name, d in DEVICES.items():
        assert re.search(r"20\d\d", d.source) and re.search("approximate|rounded", d.source)
        assert 0 < PRESETS[name].depolarizing2 < 0.05 and PRESETS[name].readout < 0.05
    with pytest.raises(ValueError, match="valid keys: depolarizing, depolarizing2, damping"):
        NoiseModel.parse("depolarising=0.1")
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        NoiseModel.parse("readout=1.5")
    with pytest.raises(ValueError, match="not a number"):
        NoiseModel.parse("damping=abc")
    with pytest.raises(ValueError, match="valid: ibm-eagle, ibm-heron, ionq-aria"):
        NoiseModel.parse("preset:ibm-osprey")
    with pytest.raises(ValueError, match="method must be one of density, trajectories"):
        NoisySimulator(m, method="exact")
    layer = build_quantum_layer(11, encoding="angle", ansatz="none")
    set_noise(layer, m)
    with pytest.raises(ValueError, match=r"stops at 10 qubits: 11 qubits need 32 MiB per "
                                         r"sample \(64 MiB for a batch of 2\)"):
        layer(torch.rand(2, 11))
    set_noise(layer, m, method="trajectories", trajectories=2, seed=0)
    assert layer(torch.rand(2, 11)).shape == (2, 11)
    with pytest.raises(ValueError, match="no circuit that can run under noise"):
        set_noise(torch.nn.Linear(2, 2), m)


@pytest.mark.skipif(importlib.util.find_spec("qiskit_ibm_runtime") is None,
                    reason="needs: pip install --no-deps qiskit-ibm-runtime==0.51.0")
def test_ibm_presets_are_the_medians_of_qiskit_calibration_snapshots(capsys):
    spec = importlib.util.spec_from_file_location(
        "device_figures", Path(__file__).parents[1] / "scripts" / "device_figures.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main([]) == 0, capsys.readouterr().out
