"""qdistill.quantum against PennyLane default.qubit: states, probabilities, <Z>, gradients.

PennyLane circuits are written here from each module's documented definition (not from
its ``ops()``), batched by PennyLane's parameter broadcasting.
"""

from __future__ import annotations

import random

import pytest
import torch

import qdistill.quantum as q

qml = pytest.importorskip("pennylane")

C128 = torch.complex128
F64 = torch.float64

PL_GATES = {
    "h": qml.Hadamard, "x": qml.PauliX, "y": qml.PauliY, "z": qml.PauliZ, "rx": qml.RX,
    "ry": qml.RY, "rz": qml.RZ, "rot": qml.Rot, "u3": qml.U3, "cnot": qml.CNOT, "cz": qml.CZ,
    "crx": qml.CRX, "cry": qml.CRY, "crz": qml.CRZ, "swap": qml.SWAP,
}


def qnode(n, body, measure):
    dev = qml.device("default.qubit", wires=n)

    @qml.qnode(dev, interface="torch", diff_method="backprop")
    def circuit(*args):
        body(*args)
        return measure()

    return circuit


def random_gate_list(n: int, rng: random.Random, length: int):
    """Every gate at least once (where it fits), random wires in random order."""
    names = [g for g in PL_GATES if q.GATES[g][0] <= n]
    seq = names + [rng.choice(names) for _ in range(max(0, length - len(names)))]
    rng.shuffle(seq)
    return [(g, rng.sample(range(n), q.GATES[g][0])) for g in seq]


def run_ours(n, gates, angles, batch, dtype=C128):
    s = q.zero_state(n, batch, dtype=dtype)
    k = 0
    for name, wires in gates:
        m = q.GATES[name][1]
        params = [angles[k + j] for j in range(m)]
        s = q.apply_gate(s, name, wires, params if m > 1 else (params[0] if m else None))
        k += m
    return s


def pl_body(gates):
    def body(angles):
        k = 0
        for name, wires in gates:
            m = q.GATES[name][1]
            PL_GATES[name](*[angles[k + j] for j in range(m)], wires=wires)
            k += m
    return body


@pytest.mark.parametrize("n", [1, 2, 3, 4, 6, 10])
def test_random_circuits_every_gate(n):
    rng = random.Random(n)
    torch.manual_seed(n)
    batch = 3
    gates = random_gate_list(n, rng, 24 if n < 10 else 30)
    n_angles = sum(q.GATES[g][1] for g, _ in gates)
    # every other angle is per-sample (B,), the rest shared scalars
    angles = [torch.rand(batch, dtype=F64) * 6 - 3 if i % 2 else torch.tensor(rng.uniform(-3, 3),
              dtype=F64) for i in range(n_angles)]
    ours = run_ours(n, gates, angles, batch)
    ref = qnode(n, pl_body(gates), qml.state)(angles)
    torch.testing.assert_close(ours.reshape(batch, -1), ref, atol=1e-10, rtol=0)
    wires = rng.sample(range(n), min(n, 3))
    ref_p = qnode(n, pl_body(gates), lambda: qml.probs(wires=wires))(angles)
    torch.testing.assert_close(q.probabilities(ours, wires), ref_p, atol=1e-10, rtol=0)
    ref_z = qnode(n, pl_body(gates), lambda: [qml.expval(qml.PauliZ(w)) for w in wires])(angles)
    torch.testing.assert_close(q.expval_z(ours, wires), torch.stack(ref_z, -1), atol=1e-10,
                               rtol=0)
    # complex64 to ~1e-5
    ours64 = run_ours(n, gates, [a.float() for a in angles], batch, torch.complex64)
    torch.testing.assert_close(q.probabilities(ours64, wires).double(), ref_p, atol=2e-5, rtol=0)


def test_random_circuit_gradients_match_pennylane():
    rng = random.Random(7)
    n, batch = 4, 3
    gates = random_gate_list(n, rng, 20)
    n_angles = sum(q.GATES[g][1] for g, _ in gates)
    base = [torch.rand(batch, dtype=F64) if i % 3 == 0 else torch.tensor(rng.uniform(-3, 3),
            dtype=F64) for i in range(n_angles)]
    weights = torch.randn(batch, 2 ** n, dtype=F64)

    def grads(fn):
        angles = [a.clone().requires_grad_() for a in base]
        (fn(angles) * weights).sum().backward()
        return [a.grad for a in angles]

    ours = grads(lambda a: q.probabilities(run_ours(n, gates, a, batch)))
    ref = grads(lambda a: qnode(n, pl_body(gates), qml.probs)(a))
    for g1, g2 in zip(ours, ref, strict=True):
        torch.testing.assert_close(g1, g2, atol=1e-8, rtol=1e-6)


# ----------------------------------------------------------------- encodings ---

def pl_encoding(kind, n, rotation="X", hadamard=False):
    def body(x):
        if hadamard:
            for k in range(n):
                qml.Hadamard(wires=k)
        if kind == "amplitude":
            qml.AmplitudeEmbedding(x, wires=range(n), normalize=True, pad_with=0.0)
        elif kind == "angle":
            qml.AngleEmbedding(x, wires=range(x.shape[-1]), rotation=rotation)
        else:
            for k in range(n):
                qml.RY(x[..., 2 * k], wires=k)
                qml.RZ(x[..., 2 * k + 1], wires=k)
    return body


@pytest.mark.parametrize("n", [1, 3, 5, 8])
def test_encodings(n):
    torch.manual_seed(n)
    batch = 4
    cases = [("amplitude", q.AmplitudeEncoding(n, dtype=C128), 2 ** n, "X"),
             ("amplitude", q.AmplitudeEncoding(n, dtype=C128), max(1, 2 ** n - 3), "X"),
             ("dense", q.DenseEncoding(n, dtype=C128), 2 * n, "X")]
    cases += [("angle", q.AngleEncoding(n, r, dtype=C128, hadamard=hd), n, r.upper())
              for r in "xyz" for hd in (False, True)]
    for kind, enc, feats, rot in cases:
        x = torch.rand(batch, feats, dtype=F64) * 3
        hd = getattr(enc, "hadamard", False)
        ref = qnode(n, pl_encoding(kind, n, rot, hd), qml.state)(x)
        torch.testing.assert_close(enc(x).reshape(batch, -1), ref, atol=1e-10, rtol=0)
        if kind != "amplitude":  # the gate path used by re-uploading
            applied = enc.apply(q.zero_state(n, batch, dtype=C128), x)
            torch.testing.assert_close(applied.reshape(batch, -1), ref, atol=1e-10, rtol=0)


# ----------------------------------------------------------------- ansatze ---

def pl_hardware_efficient(a: q.HardwareEfficient):
    gate = {"rx": qml.RX, "ry": qml.RY, "rz": qml.RZ}

    def body(w):
        for lay in range(a.n_layers):
            for i in range(a.n_qubits):
                for j, r in enumerate(a.rotations):
                    gate[r](w[lay, i, j], wires=i)
            n = a.n_qubits
            pairs = [] if n == 1 else [(0, 1)] if n == 2 else [(i, i + 1) for i in range(n - 1)]
            if a.entangler == "ring" and n > 2:
                pairs.append((n - 1, 0))
            for c, t in pairs:
                qml.CNOT(wires=[c, t])
    return body


def pl_paper_v2(a: q.PaperV2Block):
    def body(rx, ry, rz, s):
        for lay in range(a.n_layers):
            for i in range(a.n_qubits):
                qml.RX(rx[lay, i], wires=i)
                qml.RY(ry[lay, i], wires=i)
                qml.RZ(rz[lay, i], wires=i)
                qml.RX(rx[lay, i], wires=i)
            for i in range(a.n_qubits):
                qml.RX(s[lay, 0], wires=i)
                qml.RY(s[lay, 1], wires=i)
                qml.RZ(s[lay, 2], wires=i)
    return body


def pl_qcnn(a: q.QCNN):
    def body(cw, pw):
        active = list(range(a.n_qubits))
        lev = 0
        while len(active) > a.n_readout:
            m, t, p = len(active), cw[lev], pw[lev]
            pairs = [(active[i], active[i + 1]) for i in range(0, m - 1, 2)]
            pairs += [(active[i], active[i + 1]) for i in range(1, m - 1, 2)]
            for x, y in pairs:
                qml.RX(t[0], wires=x)
                qml.RX(t[1], wires=y)
                qml.RY(t[2], wires=x)
                qml.RY(t[3], wires=y)
                qml.CNOT(wires=[x, y])
                qml.RY(t[4], wires=x)
                qml.RY(t[5], wires=y)
                qml.CNOT(wires=[y, x])
            drop = []
            for j in range(min(m // 2, m - a.n_readout)):
                d, k = active[2 * j + 1], active[2 * j]
                qml.CRZ(p[0], wires=[d, k])
                qml.PauliX(wires=d)
                qml.CRX(p[1], wires=[d, k])
                qml.PauliX(wires=d)
                drop.append(d)
            active = [w for w in active if w not in drop]
            lev += 1
    return body


def ansatz_cases(n):
    se = q.StronglyEntangling(n, 3)
    he = q.HardwareEfficient(n, 2)
    he2 = q.HardwareEfficient(n, 2, ("rx", "rz", "ry"), "line")
    pv = q.PaperV2Block(n, 2)
    qc = q.QCNN(n, 1 if n < 4 else 2)
    return [
        (se, lambda: qml.StronglyEntanglingLayers(se.weights, wires=range(n)), []),
        (he, pl_hardware_efficient(he), [he.weights]),
        (he2, pl_hardware_efficient(he2), [he2.weights]),
        (pv, pl_paper_v2(pv), [pv.rx, pv.ry, pv.rz, pv.shared]),
        (qc, pl_qcnn(qc), [qc.conv_weights, qc.pool_weights]),
    ]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7])
def test_ansatze_states_probs_and_gradients(n):
    torch.manual_seed(10 + n)
    batch = 3
    x = torch.rand(batch, n, dtype=F64) * 3
    for ansatz, body, params in ansatz_cases(n):
        ansatz.double()
        name = type(ansatz).__name__

        def pl_full(x=x, body=body, params=params):
            qml.AngleEmbedding(x, wires=range(n), rotation="Y")
            body(*params) if params else body()

        enc = q.AngleEncoding(n, "y", dtype=C128)
        ours = ansatz(enc(x))
        ref = qnode(n, pl_full, qml.state)()
        torch.testing.assert_close(ours.reshape(batch, -1), ref, atol=1e-10, rtol=0, msg=name)
        if ansatz.num_parameters == 0:  # QCNN on one qubit: nothing to pool
            continue
        wires = list(range(n))[::-1]
        r = torch.randn(batch, n, dtype=F64)
        ansatz.zero_grad()
        (q.expval_z(ansatz(enc(x)), wires) * r).sum().backward()
        ours_g = [p.grad.clone() for p in ansatz.parameters()]
        ansatz.zero_grad()
        z = qnode(n, pl_full, lambda w=wires: [qml.expval(qml.PauliZ(i)) for i in w])()
        (torch.stack(z, -1) * r).sum().backward()
        ref_g = [p.grad.clone() for p in ansatz.parameters()]
        for g1, g2 in zip(ours_g, ref_g, strict=True):
            torch.testing.assert_close(g1, g2, atol=1e-8, rtol=1e-6, msg=name)


def test_reuploading_and_input_gradients_match_pennylane():
    torch.manual_seed(3)
    n, batch = 3, 4
    layers = [q.HardwareEfficient(n, 1).double() for _ in range(3)]
    model = q.QuantumLayer(q.ReUploading(q.DenseEncoding(n, dtype=C128), layers),
                           measurement=q.Probs([2, 0]))
    x = (torch.rand(batch, 2 * n, dtype=F64) * 3).requires_grad_()

    def pl_full():
        for layer in layers:
            pl_encoding("dense", n)(x)
            pl_hardware_efficient(layer)(layer.weights)

    ref = qnode(n, pl_full, lambda: qml.probs(wires=[2, 0]))()
    torch.testing.assert_close(model(x), ref, atol=1e-10, rtol=0)
    (gx_ref,) = torch.autograd.grad((ref ** 2).sum(), x)
    (gx,) = torch.autograd.grad((model(x) ** 2).sum(), x)
    torch.testing.assert_close(gx, gx_ref, atol=1e-8, rtol=1e-6)


def test_amplitude_paper_v2_float32_gradients_within_1e4():
    """The v2 student in its default precision (complex64) against PennyLane float64."""
    torch.manual_seed(4)
    n, batch = 4, 5
    a = q.PaperV2Block(n)
    model = q.QuantumLayer(q.AmplitudeEncoding(n), a, fuse=False)
    x = torch.rand(batch, 16)
    (model(x) ** 2).sum().backward()
    ours = [p.grad.clone() for p in a.parameters()]
    params = [p.detach().double().requires_grad_() for p in a.parameters()]

    def pl_full():
        pl_encoding("amplitude", n)(x.double())
        pl_paper_v2(a)(*params)

    z = qnode(n, pl_full, lambda: [qml.expval(qml.PauliZ(i)) for i in range(n)])()
    (torch.stack(z, -1) ** 2).sum().backward()
    for g1, p in zip(ours, params, strict=True):
        torch.testing.assert_close(g1.double(), p.grad, atol=1e-4, rtol=1e-4)


# ----------------------------------------------------------------- finite differences ---

@pytest.mark.parametrize("ansatz", ["paper_v2", "hardware_efficient", "strongly_entangling",
                                    "qcnn"])
def test_gradcheck_against_finite_differences(ansatz):
    torch.manual_seed(5)
    layer = q.build_quantum_layer(3, "dense", ansatz, 2, measurement="probs",
                                  dtype=C128).double()
    layer.fuse = False
    params = list(layer.parameters())

    x = torch.rand(2, 6, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: layer(x), (x,), atol=1e-6)
    func = torch.func.functional_call
    names = [k for k, _ in layer.named_parameters()]
    values = tuple(p.detach().clone().requires_grad_() for p in params)
    assert torch.autograd.gradcheck(
        lambda *v: func(layer, dict(zip(names, v, strict=True)), (x.detach(),)), values,
        atol=1e-6)
