"""Device placement, checked without a GPU: every model trains a step on ``meta``.

A tensor on PyTorch's ``meta`` device has a shape, a dtype and a device but no values.
So on ``meta`` the two faults that break or slow CUDA code both raise:

- a tensor made on the CPU inside the hot path (a missing ``device=``) and combined
  with the model's tensors: "Tensor on device cpu is not on the expected device meta";
- the host reading a value (``.item()``, ``bool(t)``, ``nonzero``): on CUDA that makes
  the CPU wait for the GPU every batch; on ``meta`` there is no value to read.

tests/test_cuda.py checks the numbers on a real GPU (skipped without one); this file
runs everywhere. Shots and noise trajectories run with ``generator=None`` on ``meta``
(torch has no ``meta`` random generator).
"""

import pytest
import torch
from torch import nn

from qdistill.config import StudentConfig
from qdistill.errors import QdistillError
from qdistill.losses import KDLoss
from qdistill.quantum.encodings import AmplitudeEncoding
from qdistill.quantum.measure import SeededSampling
from qdistill.quantum.noise import set_noise
from qdistill.students import REDUCTIONS, build_student
from qdistill.teachers.models import build_teacher
from qdistill.training.evaluation import evaluate

META = torch.device("meta")
SHAPE = (1, 28, 28)

STUDENTS = (
    [StudentConfig(name="paper-v1", qubits=3, head=h) for h in ("logprob", "paper")]
    + [StudentConfig(name="paper-v2", qubits=4, reduction=r) for r in REDUCTIONS]
    + [StudentConfig(name="paper-v2", qubits=4, encoding=e) for e in ("angle", "dense")]
    + [StudentConfig(name="quantum", qubits=q, reduction="avgpool", encoding=e, ansatz=a,
                     readout=r)  # z readout: one qubit per class
       for q, e, a, r in ((4, "amplitude", "hea", "probs"), (6, "angle", "strong", "z"),
                          (4, "dense", "qcnn", "probs"), (6, "amplitude", "hea", "z"))]
)


def _train_step_on_meta(model: nn.Module, classes: int) -> torch.Tensor:
    model.to(META)
    x = torch.rand(8, *SHAPE, device=META)
    y = torch.zeros(8, dtype=torch.long, device=META)
    soft = torch.rand(8, classes, device=META)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    logits = model(x)
    loss = KDLoss(3.0, 0.9, class_outputs=getattr(model, "class_outputs", None))(
        logits, y, soft)
    loss.backward()
    opt.step()
    assert all(p.device == META for p in model.parameters())
    return logits


def test_meta_catches_both_faults():
    """The premise: a CPU-made tensor and a host read both fail on meta."""
    w = torch.ones(3, device=META)
    with pytest.raises(RuntimeError, match="device"):
        w + torch.ones(3)
    with pytest.raises(RuntimeError):
        (w > 0).any().item()
    with pytest.raises((RuntimeError, NotImplementedError)):
        w.nonzero()


def _student_id(c: StudentConfig) -> str:
    return f"{c.name}-{c.head}-{c.reduction}-{c.encoding}-{c.ansatz}-{c.readout}"


@pytest.mark.parametrize("cfg", STUDENTS, ids=_student_id)
def test_student_trains_on_meta(cfg):
    torch.manual_seed(0)
    student = build_student(cfg, 6, SHAPE)
    if hasattr(student, "fit_preprocessing"):  # PCA is fitted on the CPU, then moved
        student.fit_preprocessing(torch.rand(64, *SHAPE))
    logits = _train_step_on_meta(student, 6)
    assert logits.device == META and logits.shape[0] == 8


@pytest.mark.parametrize("arch", ["lenet", "alexnet", "ensemble", "mlp"])
def test_teacher_trains_on_meta(arch):
    logits = _train_step_on_meta(build_teacher(arch, 6, SHAPE), 6)
    assert logits.shape == (8, 6)


def test_noisy_density_matrix_student_trains_on_meta():
    student = build_student(StudentConfig(name="quantum", qubits=3, reduction="avgpool",
                                          layers=2), 6, SHAPE)
    assert set_noise(student, "depolarizing=0.01,damping=0.02,readout=0.03") == 1
    logits = _train_step_on_meta(student, 6)
    assert logits.shape == (8, 6)


def test_zero_norm_sample_refused_on_cpu_without_a_host_read_elsewhere():
    enc = AmplitudeEncoding(2)
    x = torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 0]])
    with pytest.raises(ValueError, match=r"sample\(s\) \[1\]"):
        enc(x)
    # Off the CPU the check would be a host read per batch; it is skipped (no error on
    # meta), and the NaN it leaves is caught once per evaluation instead:
    assert enc(x.to(META)).device == META
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():
        model[1].weight[0, 0] = float("nan")
    with pytest.raises(QdistillError, match=r"non-finite \(NaN or inf\) outputs"):
        evaluate(model, torch.rand(3, 1, 2, 2), torch.zeros(3, dtype=torch.long))


@pytest.mark.parametrize("mode", ["shots", "trajectories"])
def test_sampling_students_train_on_meta(mode, monkeypatch):
    # torch has no meta random generator: the sampling code gets generator=None there,
    # everything else (multinomial, rand, the gathers) runs as on a GPU.
    real = SeededSampling.generator
    monkeypatch.setattr(SeededSampling, "generator",
                        lambda self, device: None if torch.device(device) == META
                        else real(self, device))
    cfg = StudentConfig(name="quantum", qubits=3, reduction="avgpool", layers=2)
    if mode == "shots":
        cfg.shots = 100
    else:
        cfg.noise, cfg.noise_method, cfg.noise_trajectories = "depolarizing=0.5,damping=0.1", \
            "trajectories", 4
    logits = _train_step_on_meta(build_student(cfg, 6, SHAPE), 6)
    assert logits.shape == (8, 6)
