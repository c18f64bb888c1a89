"""CPU vs CUDA: the same numbers to 1e-4 (skipped without a CUDA GPU).

Every student, the teachers, and a short training run of `fit` (the distillation
loss included) on both devices from the same initial weights and the same data.
"""

import copy

import pytest
import torch

from qdistill.config import StudentConfig, TrainConfig
from qdistill.data import make_task
from qdistill.losses import KDLoss
from qdistill.students import build_student
from qdistill.teachers.models import build_teacher
from qdistill.training.evaluation import as_float
from qdistill.training.fit import fit, seed_everything

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

STUDENTS = [
    StudentConfig(name="paper-v1", qubits=3, head="logprob"),
    StudentConfig(name="paper-v1", qubits=3, head="paper"),
    StudentConfig(name="paper-v2", qubits=4, reduction="fc", encoding="amplitude"),
    StudentConfig(name="paper-v2", qubits=4, reduction="pca", encoding="angle"),
    StudentConfig(name="paper-v2", qubits=4, reduction="avgpool", encoding="dense"),
    StudentConfig(name="quantum", qubits=4, reduction="avgpool", encoding="amplitude"),
]


@pytest.fixture(scope="module")
def task():
    return make_task("digits", "0-3", train_per_class=32, test_per_class=16,
                     val_per_class=8)


@pytest.mark.parametrize("cfg", STUDENTS, ids=lambda c: f"{c.name}-{c.reduction}-{c.encoding}")
def test_student_forward_cpu_equals_cuda(cfg, task):
    seed_everything(0)
    if cfg.name == "paper-v1":  # its conv front end needs >= 16x16 images
        student, x = build_student(cfg, 6, (1, 28, 28)), torch.rand(16, 1, 28, 28)
    else:
        student = build_student(cfg, task.num_classes, task.image_shape)
        x = as_float(task.test.images[:16])
    if hasattr(student, "fit_preprocessing"):
        student.fit_preprocessing(task.train.float_images())
    student.eval()  # no dropout: both devices see the same network
    cpu = student(x)
    gpu = copy.deepcopy(student).cuda()(x.cuda())
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)


def test_teacher_forward_cpu_equals_cuda():
    seed_everything(0)
    for arch in ("lenet", "alexnet"):
        model = build_teacher(arch, 6, (1, 28, 28)).eval()
        x = torch.rand(4, 1, 28, 28)
        with torch.no_grad():
            cpu, gpu = model(x), copy.deepcopy(model).cuda()(x.cuda())
        torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)


def test_distillation_run_cpu_equals_cuda(task):
    seed_everything(0)
    student = build_student(StudentConfig(name="paper-v2", qubits=4), task.num_classes,
                            task.image_shape)
    soft = torch.randn(len(task.train.labels), task.num_classes, generator=torch.Generator()
                       .manual_seed(1)) * 3
    histories = []
    for device in ("cpu", "cuda"):
        model = copy.deepcopy(student)
        result = fit(model, task.train, task.val, task.test,
                     TrainConfig(epochs=2, batch_size=16, device=device, deterministic=True),
                     loss_fn=KDLoss(3.0, 0.9), soft_targets=soft)
        assert next(model.parameters()).device.type == device
        histories.append(result.history)
    # Accuracies: at most one image apart (of the smallest split, validation: 4 x 8). The
    # weights agree to float rounding, not bitwise, and that can flip the argmax of an
    # image whose top two logits are a near tie.
    one_image = 1 / len(task.val.labels)
    for a, b in zip(*histories, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4, abs=1e-4)
        for key in ("train_acc", "val_acc", "test_acc"):
            assert a[key] == pytest.approx(b[key], abs=one_image + 1e-9), key


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_circuit_keeps_full_precision_under_cuda_autocast(dtype, task):
    # The CUDA side of test_students.py's autocast test: float16/bfloat16 autocast on
    # the GPU leaves the circuit's float32 output as it was (1e-6: GPU kernels need not
    # be bit-reproducible; a bfloat16 computation would be off by ~1e-3).
    seed_everything(0)
    student = build_student(StudentConfig(name="paper-v2", qubits=4), task.num_classes,
                            task.image_shape).cuda().eval()
    with torch.no_grad():
        feats = student.circuit_input(as_float(task.test.images[:16]).cuda())
        exact = student.quantum(feats)
        with torch.autocast("cuda", dtype=dtype):
            under_amp = student.quantum(feats)
    assert under_amp.dtype == torch.float32
    torch.testing.assert_close(under_amp, exact, atol=1e-6, rtol=1e-6)
