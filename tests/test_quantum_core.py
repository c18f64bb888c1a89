"""Closed-form checks, modules, memory guard and device handling of qdistill.quantum."""

from __future__ import annotations

import io
import math

import pytest
import torch

import qdistill.quantum as q
from qdistill.quantum import state as qstate
from qdistill.quantum.gates import rot_matrix, u3_matrix

C128 = torch.complex128
EXPORT_NAMES = {"h", "x", "y", "z", "rx", "ry", "rz", "u", "cx", "cz", "crx", "cry", "crz", "swap"}


def amps(state: torch.Tensor) -> torch.Tensor:
    return state.reshape(state.shape[0], -1)


# --------------------------------------------------------------- closed forms ---

@pytest.mark.parametrize("gate", ["rx", "ry", "rz"])
def test_single_qubit_rotation_on_zero(gate):
    t = torch.linspace(-3, 3, 7, dtype=torch.float64)
    s = getattr(q, gate)(q.zero_state(1, len(t), dtype=C128), t, 0)
    c, sn = torch.cos(t / 2), torch.sin(t / 2)
    expected = {
        "rx": torch.stack([c + 0j, -1j * sn], 1),
        "ry": torch.stack([c + 0j, sn + 0j], 1),
        "rz": torch.stack([torch.exp(-0.5j * t), torch.zeros_like(c) + 0j], 1),
    }[gate]
    torch.testing.assert_close(amps(s), expected.to(C128))
    z = q.expval_z(s)[:, 0]
    torch.testing.assert_close(z, torch.cos(t) if gate != "rz" else torch.ones_like(t))


def test_fixed_gates_and_u3_rot_closed_forms():
    s = q.zero_state(1, 1, dtype=C128)
    r2 = 1 / math.sqrt(2)
    torch.testing.assert_close(amps(q.h(s, 0)), torch.tensor([[r2, r2]], dtype=C128))
    torch.testing.assert_close(amps(q.x(s, 0)), torch.tensor([[0, 1]], dtype=C128))
    torch.testing.assert_close(amps(q.y(s, 0)), torch.tensor([[0, 1j]], dtype=C128))
    torch.testing.assert_close(amps(q.z(q.x(s, 0), 0)), torch.tensor([[0, -1]], dtype=C128))
    a, b, c = (torch.tensor(v, dtype=torch.float64) for v in (0.3, -1.1, 2.0))
    torch.testing.assert_close(rot_matrix(a, b, c), q.gate_matrix("rz", c) @ q.gate_matrix(
        "ry", b) @ q.gate_matrix("rz", a))
    # U3 equals Rot up to the global phase e^{i(phi+lam)/2}: U3(t, p, l) ~ RZ(p) RY(t) RZ(l)
    u = u3_matrix(b, a, c)
    r = rot_matrix(c, b, a) * torch.exp(0.5j * (a + c))
    torch.testing.assert_close(u, r)


def test_bell_and_ghz():
    s = q.cnot(q.h(q.zero_state(2, 1, dtype=C128), 0), 0, 1)
    r2 = 1 / math.sqrt(2)
    torch.testing.assert_close(amps(s), torch.tensor([[r2, 0, 0, r2]], dtype=C128))
    s = q.h(q.zero_state(5, 2), 0)
    for w in range(4):
        s = q.cnot(s, w, w + 1)
    p = q.probabilities(s)
    expected = torch.zeros(2, 32)
    expected[:, 0] = expected[:, 31] = 0.5
    torch.testing.assert_close(p, expected)


def test_paper_v1_product_formula():
    """H then RY(theta_k) on each qubit: bits independent, P(bit k = 1) = (1 + sin)/2."""
    torch.manual_seed(0)
    n, batch = 4, 6
    theta = (torch.rand(batch, n, dtype=torch.float64) * 2 - 1) * math.pi
    s = q.zero_state(n, batch, dtype=C128)
    for k in range(n):
        s = q.ry(q.h(s, k), theta[:, k], k)
    p1 = (1 + torch.sin(theta)) / 2
    bits = qstate.bit_table(n).to(torch.float64)  # (16, n)
    expected = torch.prod(bits * p1[:, None, :] + (1 - bits) * (1 - p1[:, None, :]), dim=-1)
    torch.testing.assert_close(q.probabilities(s), expected)
    torch.testing.assert_close(q.probabilities(s, [2]), torch.stack([1 - p1[:, 2], p1[:, 2]], 1))
    v1 = q.build_quantum_layer(n, "angle", "none", rotation="y", hadamard=True,
                               measurement="probs", dtype=C128)
    torch.testing.assert_close(v1(theta), expected)


def test_amplitude_encoding_known_vector_padding_and_errors():
    enc = q.AmplitudeEncoding(2, dtype=C128)
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(amps(enc(x)).real, x / x.norm(dim=1, keepdim=True))
    padded = enc(torch.tensor([[3.0, 4.0]], dtype=torch.float64))
    torch.testing.assert_close(amps(padded), torch.tensor([[0.6, 0.8, 0, 0]], dtype=C128))
    with pytest.raises(ValueError, match="zero norm"):
        enc(torch.tensor([[1.0, 0, 0, 0], [0.0, 0, 0, 0]]))
    with pytest.raises(ValueError, match="at most 4"):
        enc(torch.ones(1, 5))


@pytest.mark.parametrize("n", [1, 2, 3, 5, 6, 7, 11])
def test_product_state_is_sequential_kronecker_product(n):
    v = torch.randn(3, n, 2, dtype=C128)
    ref = v[:, 0]
    for k in range(1, n):
        ref = (ref[:, :, None] * v[:, k, None, :]).reshape(3, -1)
    torch.testing.assert_close(amps(q.product_state(v)), ref)


def test_marginal_probabilities_follow_requested_wire_order():
    torch.manual_seed(1)
    s = q.StronglyEntangling(3, 2).double()(q.zero_state(3, 2, dtype=C128))
    full = q.probabilities(s).view(2, 2, 2, 2)
    torch.testing.assert_close(q.probabilities(s, [2, 0]), full.sum(2).transpose(1, 2)
                               .reshape(2, 4))
    torch.testing.assert_close(q.expval_z(s, [1]), (full.sum((1, 3)) @ torch.tensor(
        [1.0, -1.0], dtype=torch.float64))[:, None])


# --------------------------------------------------------------- modules ---

def all_ansatze(n: int) -> list[q.Ansatz]:
    gates = [("h", [0]), ("rot", [n - 1]), ("u3", [0]), ("y", [n - 1])]
    if n > 1:
        gates += [("crx", [0, n - 1]), ("cry", [n - 1, 0]), ("crz", [1, 0]), ("swap", [0, 1]),
                  ("cz", [n - 1, 0]), ("cnot", [n - 1, 0]), ("x", [1]), ("z", [0])]
    return [q.HardwareEfficient(n, 2), q.HardwareEfficient(n, 2, ("rx", "ry"), "line"),
            q.StronglyEntangling(n, 3), q.PaperV2Block(n), q.QCNN(n), q.Circuit(n, gates)]


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_ops_replay_matches_forward_and_uses_export_names(n):
    torch.manual_seed(n)
    x = torch.rand(3, n, dtype=torch.float64)
    enc = q.AngleEncoding(n, "y", dtype=C128)
    for ansatz in all_ansatze(n):
        ansatz = ansatz.double()
        out = ansatz(enc(x))
        replay = q.apply_ops(enc(x), ansatz.ops())
        torch.testing.assert_close(out, replay, msg=type(ansatz).__name__)
        assert {op.name for op in ansatz.ops()} <= EXPORT_NAMES


@pytest.mark.parametrize("n", [1, 2, 4, 7])
def test_encoding_ops_replay_matches_encoding(n):
    torch.manual_seed(n)
    cases = [(q.AmplitudeEncoding(n, dtype=C128), 2**n), (q.AmplitudeEncoding(n, dtype=C128),
             max(1, 2**n - 3)), (q.DenseEncoding(n, dtype=C128), 2 * n)]
    cases += [(q.AngleEncoding(n, r, dtype=C128, hadamard=hd), n) for r in "xyz"
              for hd in (False, True)]
    for enc, feats in cases:
        x = torch.randn(feats, dtype=torch.float64)  # negative amplitudes included
        ops = enc.ops(x)
        assert {op.name for op in ops} <= EXPORT_NAMES
        replay = q.apply_ops(q.zero_state(n, 1, dtype=C128), ops)
        torch.testing.assert_close(replay, enc(x[None]), atol=1e-12, rtol=0)
    layer = q.build_quantum_layer(n, "amplitude", "paper_v2", dtype=C128).double()
    x = torch.rand(2**n, dtype=torch.float64)
    state = q.apply_ops(q.zero_state(n, 1, dtype=C128), layer.ops(x))
    torch.testing.assert_close(q.expval_z(state), layer(x[None]))


def test_parameter_counts_and_qcnn_readout():
    assert q.PaperV2Block(5).num_parameters == 3 * 5 + 3
    assert q.HardwareEfficient(4, 3).num_parameters == 4 * 3 * 2
    assert q.StronglyEntangling(4, 2).num_parameters == 24
    qc = q.QCNN(8)
    assert qc.readout_wires == [0] and qc.num_parameters == 3 * 8
    assert q.QCNN(8, n_readout=3).readout_wires == [0, 4, 6]
    layer = q.build_quantum_layer(8, "amplitude", "qcnn", n_layers=2)
    assert layer(torch.rand(4, 256)).shape == (4, 2)
    with pytest.raises(ValueError, match="encoding must be"):
        q.build_quantum_layer(4, encoding="amplitud")


def test_state_dict_roundtrip_weights_only():
    for make in [lambda: q.build_quantum_layer(4, "amplitude", "paper_v2"),
                 lambda: q.build_quantum_layer(4, "angle", "strongly_entangling", 2),
                 lambda: q.build_quantum_layer(4, "dense", "hardware_efficient", 2,
                                               reupload=True),
                 lambda: q.build_quantum_layer(4, "amplitude", "qcnn", measurement="probs")]:
        torch.manual_seed(0)
        a = make()
        torch.manual_seed(1)
        b = make()
        x = torch.rand(5, 16) if isinstance(a.encoding, q.AmplitudeEncoding) else torch.rand(5, 4)
        assert not torch.allclose(a(x), b(x))
        buf = io.BytesIO()
        torch.save(a.state_dict(), buf)
        buf.seek(0)
        b.load_state_dict(torch.load(buf, weights_only=True))
        torch.testing.assert_close(a(x), b(x))


def test_batch_independence():
    torch.manual_seed(0)
    layer = q.build_quantum_layer(5, "angle", "strongly_entangling", 2, measurement="probs")
    x = torch.rand(7, 5)
    full = layer(x)
    perm = torch.randperm(7)
    torch.testing.assert_close(layer(x[perm]), full[perm])
    for i in (0, 3, 6):
        torch.testing.assert_close(layer(x[i:i + 1]), full[i:i + 1])


@pytest.mark.parametrize("encoding", ["amplitude", "angle", "dense"])
@pytest.mark.parametrize("ansatz", ["paper_v2", "hardware_efficient", "strongly_entangling",
                                    "qcnn"])
def test_complex64_matches_complex128(encoding, ansatz):
    torch.manual_seed(0)
    feats = {"amplitude": 64, "angle": 6, "dense": 12}[encoding]
    lo = q.build_quantum_layer(6, encoding, ansatz, 2)
    torch.manual_seed(0)
    hi = q.build_quantum_layer(6, encoding, ansatz, 2, dtype=C128).double()
    x = torch.rand(4, feats)
    torch.testing.assert_close(lo(x).double(), hi(x.double()), atol=1e-5, rtol=1e-5)


def test_fused_unitary_path_matches_gate_path():
    torch.manual_seed(0)
    layer = q.build_quantum_layer(4, "angle", "hardware_efficient", 3)
    x = torch.rand(9, 4)
    layer.fuse = True
    fused = layer(x)
    layer.fuse = False
    torch.testing.assert_close(fused, layer(x), atol=1e-6, rtol=1e-5)
    big = torch.rand(300, 4)  # "auto" fuses: 2**4 * 16 <= 300
    expected = layer(big)
    layer.fuse = "auto"
    torch.testing.assert_close(layer(big), expected, atol=1e-6, rtol=1e-5)
    u = layer.ansatz.unitary(C128)
    torch.testing.assert_close(u.conj().T @ u, torch.eye(16, dtype=C128), atol=1e-6, rtol=0)


def test_reuploading_rejects_amplitude_and_counts_layers():
    with pytest.raises(ValueError, match="re-uploaded"):
        q.ReUploading(q.AmplitudeEncoding(2), [q.PaperV2Block(2), q.PaperV2Block(2)])
    r = q.ReUploading(q.AngleEncoding(3), [q.HardwareEfficient(3) for _ in range(3)])
    assert r.num_parameters == 3 * 6
    assert len(r.ops(torch.rand(3))) == 3 * (3 + 6 + 3)


# --------------------------------------------------------------- memory & devices ---

def test_memory_guard_refuses_40_qubits():
    assert q.statevector_bytes(40, 1, torch.complex64) == 8 * 2**40
    assert q.statevector_bytes(3, 5, C128) == 16 * 8 * 5
    with pytest.raises(ValueError, match="GiB"):
        q.check_statevector_memory(40, 1)
    with pytest.raises(ValueError, match="GiB"):
        q.zero_state(40, 1)
    with pytest.raises(ValueError, match="GiB"):
        q.AmplitudeEncoding(40)(torch.ones(1, 4))
    with pytest.raises(ValueError, match="given limit"):
        q.check_statevector_memory(10, 4, limit_bytes=1000)
    assert q.check_statevector_memory(10, 4) == 8 * 1024 * 4


def test_no_host_tensors_in_hot_path_meta_device():
    """On the meta device any non-scalar CPU tensor mixed in would raise."""
    n = 5
    for layer in [q.QuantumLayer(q.AngleEncoding(n), q.HardwareEfficient(n, 2), fuse=False),
                  q.QuantumLayer(q.DenseEncoding(n), q.StronglyEntangling(n, 2), q.Probs([3, 1]),
                                 fuse=False),
                  q.QuantumLayer(q.AngleEncoding(n, "z"), q.QCNN(n), fuse=False),
                  q.QuantumLayer(q.AngleEncoding(n), q.PaperV2Block(n), fuse=True)]:
        layer = layer.to("meta")
        out = layer(torch.empty(3, n, device="meta"))
        assert out.device.type == "meta"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    torch.manual_seed(0)
    layer = q.build_quantum_layer(6, "amplitude", "strongly_entangling", 2, shots=None)
    x = torch.rand(8, 64)
    cpu = layer(x)
    gpu = layer.to("cuda")(x.cuda())
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=1e-5)
