"""Finite shots (seeded sampling, straight-through gradient) and the parameter-shift rule."""

from __future__ import annotations

import math

import pytest
import torch

import qdistill.quantum as q
from qdistill.quantum import measure

C128 = torch.complex128


def exact_probs(seed: int = 0, n: int = 3, batch: int = 4) -> torch.Tensor:
    torch.manual_seed(seed)
    layer = q.build_quantum_layer(n, "angle", "strongly_entangling", 2, measurement="probs")
    with torch.no_grad():
        return layer(torch.rand(batch, n))


def test_same_seed_same_samples_and_sequence_advances():
    p = exact_probs()
    a, b = q.Probs(shots=200, seed=11), q.Probs(shots=200, seed=11)
    state = q.AmplitudeEncoding(3)(p.sqrt())
    first = a(state)
    torch.testing.assert_close(first, b(state))
    second = a(state)
    assert not torch.equal(first, second)  # fresh noise each call
    a.reseed(11)
    torch.testing.assert_close(a(state), first)
    counts = first * 200
    torch.testing.assert_close(counts, counts.round())
    torch.testing.assert_close(first.sum(1), torch.ones(4))


def test_global_seed_makes_default_generator_reproducible():
    state = q.AmplitudeEncoding(3)(exact_probs().sqrt())
    torch.manual_seed(123)
    first = q.ExpvalZ(shots=50)(state)
    torch.manual_seed(123)
    again = q.ExpvalZ(shots=50)(state)
    torch.testing.assert_close(first, again)


def test_mean_of_sampled_frequencies_converges_to_exact():
    p = exact_probs().double()
    shots, repeats = 1000, 200
    gen = torch.Generator().manual_seed(0)
    freq = torch.stack([q.sample_frequencies(p, shots, gen) for _ in range(repeats)])
    mean = freq.mean(0)
    std = (p * (1 - p) / (shots * repeats)).sqrt()
    assert ((mean - p).abs() <= 5 * std + 1e-12).all()
    # single-run spread matches the binomial standard deviation
    emp_std = freq.std(0)
    assert torch.allclose(emp_std, (p * (1 - p) / shots).sqrt(), atol=0.01)


def test_counts_are_chunked_and_sum_to_shots(monkeypatch):
    monkeypatch.setattr(measure, "_SAMPLE_CHUNK", 64)
    p = exact_probs()
    counts = q.sample_counts(p, 1001, torch.Generator().manual_seed(1))
    torch.testing.assert_close(counts.sum(1), torch.full((4,), 1001.0))


def test_straight_through_forward_is_sampled_backward_is_exact():
    torch.manual_seed(2)
    n = 3
    exact = q.build_quantum_layer(n, "angle", "hardware_efficient", 2, measurement="expval")
    shot = q.build_quantum_layer(n, "angle", "hardware_efficient", 2, measurement="expval",
                                 shots=300, seed=5)
    shot.load_state_dict(exact.state_dict())
    x = torch.rand(6, n)
    r = torch.randn(6, n)
    out_s = shot(x)
    out_e = exact(x)
    assert not torch.allclose(out_s, out_e)
    # forward: <Z> from 300 joint samples, a multiple of 2/300 away from -1
    k = (out_s + 1) * 150
    torch.testing.assert_close(k, k.round(), atol=1e-4, rtol=0)
    g_s = torch.autograd.grad((out_s * r).sum(), list(shot.parameters()))
    g_e = torch.autograd.grad((out_e * r).sum(), list(exact.parameters()))
    for a, b in zip(g_s, g_e, strict=True):
        torch.testing.assert_close(a, b)


def test_shots_probs_mean_converges_through_module():
    p_exact = exact_probs(3)
    state = q.AmplitudeEncoding(3)(p_exact.sqrt())
    m = q.Probs(shots=2000, seed=0)
    mean = torch.stack([m(state) for _ in range(50)]).mean(0)
    std = (p_exact * (1 - p_exact) / (2000 * 50)).sqrt()
    assert ((mean - p_exact).abs() <= 5 * std + 1e-6).all()


# ----------------------------------------------------------------- parameter shift ---

def pauli_circuit(n: int = 3) -> q.Circuit:
    """Each angle enters exactly one Pauli rotation: the two-term rule is exact."""
    gates = [("h", [0]), ("rx", [0]), ("ry", [1]), ("cnot", [0, 1]), ("rz", [2]),
             ("rot", [2]), ("cnot", [2, 0]), ("ry", [0]), ("u3", [1]), ("cz", [1, 2]),
             ("rx", [2])]
    return q.Circuit(n, gates).double()


@pytest.mark.parametrize("shift", [math.pi / 2, math.pi / 4, 1.0])
def test_parameter_shift_matches_autograd(shift):
    torch.manual_seed(0)
    circ = pauli_circuit()
    x = torch.rand(2, 3, dtype=torch.float64)
    enc = q.AngleEncoding(3, "y", dtype=C128)

    def f(w):
        return q.expval_z(torch.func.functional_call(circ, {"weights": w}, (enc(x),)))

    w0 = circ.weights.detach().clone()
    jac_ps = q.parameter_shift(f, w0, shift=shift)
    jac_ad = torch.autograd.functional.jacobian(f, w0)
    torch.testing.assert_close(jac_ps, jac_ad, atol=1e-10, rtol=1e-8)


def test_notebook_rule_scales_gradient_by_sqrt2():
    """Shift pi/4 without the 1/(2 sin s) factor (the paper's notebooks) = sqrt(2) x grad."""
    circ = pauli_circuit()
    state = q.zero_state(3, 1, dtype=C128)

    def f(w):
        return q.expval_z(torch.func.functional_call(circ, {"weights": w}, (state,)))

    w0 = circ.weights.detach().clone()
    exact = q.parameter_shift(f, w0)
    # f(t + pi/4) - f(t - pi/4), as the notebooks computed it
    notebook = q.parameter_shift(f, w0, shift=math.pi / 4) * 2 * math.sin(math.pi / 4)
    torch.testing.assert_close(notebook, math.sqrt(2) * exact, atol=1e-10, rtol=1e-8)
