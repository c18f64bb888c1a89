"""Quantum students: closed forms, class mapping, refusals, state_dict, parameter split."""

import math

import pytest
import torch

from qdistill.config import StudentConfig
from qdistill.errors import QdistillError
from qdistill.students import (
    PaperV1Student,
    QuantumStudent,
    Reduction,
    V1Circuit,
    build_student,
    parameter_split,
)
from qdistill.training.evaluation import class_logits


def test_v1_circuit_product_formula():
    theta = torch.tensor([[0.3, -1.0, 2.0], [math.pi / 2, -math.pi / 2, 0.0]])
    p = V1Circuit(3)(theta)
    q = (1 + torch.sin(theta)) / 2  # P(bit k = 1)
    for j in range(8):
        bits = [(j >> (2 - k)) & 1 for k in range(3)]  # wire 0 = most significant bit
        expect = torch.ones(2)
        for k, b in enumerate(bits):
            expect = expect * (q[:, k] if b else 1 - q[:, k])
        assert torch.allclose(p[:, j], expect, atol=1e-6)
    assert torch.allclose(p.sum(1), torch.ones(2), atol=1e-6)


def test_v1_shots_are_frequencies_and_reproducible():
    theta = torch.tensor([[0.3, -1.0, 2.0]])
    torch.manual_seed(1)
    a = V1Circuit(3, shots=5000)(theta)
    torch.manual_seed(1)
    b = V1Circuit(3, shots=5000)(theta)
    assert torch.equal(a, b)
    assert torch.allclose(a * 5000, (a * 5000).round(), atol=1e-3)  # counts / shots
    assert (a - V1Circuit(3)(theta)).abs().max() < 0.03  # ~4 binomial std at 5000 shots


def test_v1_student_parameters_and_class_mapping():
    s = PaperV1Student(6, (1, 28, 28), qubits=3)
    # conv 260 + conv 5,020 + fc 16,050 + fc 153; the v1 circuit has no trainable gate.
    assert parameter_split(s) == {"classical": 21_483, "quantum": 0}
    x = torch.rand(4, 1, 28, 28)
    s.eval()
    logits = s(x)
    assert logits.shape == (4, 6)
    p = s.probabilities(x)
    assert p.shape == (4, 8)
    # Class j is basis state |j>: logits are log(p_j + 0.01) of the first 6 states.
    assert torch.allclose(logits, torch.log(p[:, :6] + 0.01))
    s_paper = PaperV1Student(6, (1, 28, 28), qubits=3, head="paper")
    s_paper.load_state_dict(s.state_dict())
    out = s_paper.eval()(x)
    # The notebooks' head: cat(sigmoid(p), 1 - sigmoid(p)) over all 8 states; the class
    # logits are the first 6 entries.
    assert out.shape == (4, 16)
    assert torch.allclose(out, torch.cat([torch.sigmoid(p), 1 - torch.sigmoid(p)], 1))
    assert torch.allclose(class_logits(s_paper, out), torch.sigmoid(p[:, :6]))
    assert class_logits(s, logits) is logits


def test_too_few_qubits_refused_with_minimum():
    with pytest.raises(QdistillError, match="at least 3 qubits"):
        PaperV1Student(6, (1, 28, 28), qubits=2)
    with pytest.raises(QdistillError, match="at least 10 qubits"):
        QuantumStudent(10, (1, 28, 28), qubits=8, readout="z")
    with pytest.raises(QdistillError, match="GiB"):
        build_student(StudentConfig(name="paper-v2", qubits=40), 10, (1, 28, 28))


def test_unknown_names_list_valid_ones():
    with pytest.raises(QdistillError, match="valid: paper-v1, paper-v2, quantum"):
        build_student(StudentConfig(name="nope"), 6, (1, 28, 28))
    with pytest.raises(QdistillError, match="valid: avgpool, crop, fc, maxpool, pca"):
        build_student(StudentConfig(name="paper-v2", reduction="resize"), 6, (1, 28, 28))
    with pytest.raises(QdistillError, match="valid: amplitude, angle, dense"):
        build_student(StudentConfig(name="paper-v2", encoding="iqp"), 6, (1, 28, 28))
    with pytest.raises(QdistillError, match="fixed reduction"):
        QuantumStudent(6, (1, 28, 28), reduction="fc")


@pytest.mark.parametrize("cfg", [
    StudentConfig(name="paper-v2", qubits=4),
    StudentConfig(name="paper-v2", qubits=8, reduction="pca", encoding="angle"),
    StudentConfig(name="paper-v2", qubits=4, reduction="crop", encoding="dense"),
    StudentConfig(name="quantum", qubits=6, ansatz="hea", layers=2),
    StudentConfig(name="quantum", qubits=8, ansatz="qcnn", reduction="maxpool"),
    StudentConfig(name="quantum", qubits=10, ansatz="strong", layers=1, readout="z",
                  encoding="angle"),
])
def test_students_forward_backward_and_state_dict(cfg):
    torch.manual_seed(0)
    s = build_student(cfg, 10, (1, 28, 28))
    train = torch.rand(50, 1, 28, 28)
    if hasattr(s, "fit_preprocessing"):
        s.fit_preprocessing(train)
    x = torch.rand(3, 1, 28, 28)
    out = s(x)
    assert out.shape == (3, 10) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in s.parameters())
    split = parameter_split(s)
    assert split["quantum"] > 0
    if cfg.name == "quantum":
        assert split["classical"] <= 1  # only the optional readout scale
    other = build_student(cfg, 10, (1, 28, 28))
    other.load_state_dict(s.state_dict())  # PCA buffers travel too
    assert torch.allclose(other(x), out)


def test_pca_matches_numpy_and_needs_fit():
    torch.manual_seed(0)
    images = torch.rand(200, 1, 8, 8)
    red = Reduction("pca", (1, 8, 8), 4)
    with pytest.raises(QdistillError, match="before fit"):
        red(images)
    red.fit(images)
    import numpy as np
    x = images.flatten(1).double().numpy()
    xc = x - x.mean(0)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    ours = red(images).double().numpy()
    ref = xc @ vt[:4].T
    # Principal axes are defined up to sign.
    for k in range(4):
        sign = np.sign(ours[:, k] @ ref[:, k])
        assert np.allclose(ours[:, k], sign * ref[:, k], atol=1e-4)


def test_fixed_reductions():
    img = torch.arange(28 * 28, dtype=torch.float32).view(1, 1, 28, 28)
    crop = Reduction("crop", (1, 28, 28), 16)(img)
    assert torch.allclose(crop[0, :4] - 1e-6, torch.tensor([12 * 28 + 12.0, 12 * 28 + 13,
                                                            12 * 28 + 14, 12 * 28 + 15]))
    avg = Reduction("avgpool", (1, 28, 28), 16)(img)
    assert torch.allclose(avg[0, 0] - 1e-6, img[0, 0, :7, :7].mean())
    mx = Reduction("maxpool", (1, 28, 28), 16)(img)
    assert mx[0, 0] - 1e-6 == img[0, 0, :7, :7].max()


@pytest.mark.parametrize("cfg", [
    StudentConfig(name="paper-v1", qubits=3, head="paper"),
    StudentConfig(name="paper-v2", qubits=4, encoding="amplitude"),
    StudentConfig(name="paper-v2", qubits=4, encoding="angle"),
    StudentConfig(name="quantum", qubits=4, reduction="avgpool", encoding="dense",
                  ansatz="strong"),
], ids=lambda c: f"{c.name}-{c.encoding}")
def test_circuits_keep_full_precision_under_autocast(cfg):
    # Under bfloat16 autocast the classical layers run in bfloat16 (autocast's job); the
    # circuit must not: float32 features give the bit-identical float32 output, and
    # bfloat16 features are only rounded on the way in (they are cast up, not computed
    # with). Before quantum/precision.py the paper-v2 circuit output moved by ~3e-3 and
    # the paper-v1 circuit raised (torch.complex takes no bfloat16).
    torch.manual_seed(0)
    student = build_student(cfg, 6, (1, 28, 28)).eval()
    circuit = student.circuit if cfg.name == "paper-v1" else student.quantum
    x = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        feats = student.circuit_input(x)
        exact = circuit(feats)
        from_bf16 = circuit(feats.bfloat16().float())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            under_amp = circuit(feats)
            under_amp_bf16 = circuit(feats.bfloat16())
            logits = student(x)
    assert under_amp.dtype == torch.float32 and torch.equal(under_amp, exact)
    assert torch.equal(under_amp_bf16, from_bf16)
    if cfg.name != "paper-v1":  # the public state() too: complex64 amplitudes
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            state = circuit.state(feats.bfloat16())
        assert state.dtype == torch.complex64
        assert torch.equal(state, circuit.state(feats.bfloat16().float()))
    assert logits.shape[0] == 8 and torch.isfinite(logits.float()).all()


def test_v1_half_pi_angles_halve_the_range_and_keep_the_weights():
    # Same seed, same weights: the half-pi front end's angles are exactly half of the
    # paper's, so every |theta| < pi/2, where each bit's P(1) = (1 + sin theta)/2 is
    # monotonic. The option is a plain attribute: state_dict keys do not change.
    x = torch.rand(16, 1, 28, 28)
    thetas = {}
    for angles in ("pi", "half-pi"):
        torch.manual_seed(0)
        student = build_student(StudentConfig(name="paper-v1", angles=angles), 6,
                                (1, 28, 28)).eval()
        thetas[angles] = student.circuit_input(x)
        keys = sorted(student.state_dict())
    torch.testing.assert_close(thetas["half-pi"], thetas["pi"] / 2)
    assert thetas["half-pi"].abs().max() < math.pi / 2
    torch.manual_seed(0)
    assert keys == sorted(build_student(StudentConfig(name="paper-v1"), 6,
                                        (1, 28, 28)).state_dict())
    with pytest.raises(QdistillError, match="valid: half-pi, pi"):
        build_student(StudentConfig(name="paper-v1", angles="quarter"), 6, (1, 28, 28))
    with pytest.raises(QdistillError, match="does not apply to the paper-v2 student"):
        build_student(StudentConfig(name="paper-v2", qubits=4, angles="half-pi"), 6,
                      (1, 28, 28))
