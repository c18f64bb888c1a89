"""The paper's classical teachers: LeNet-5, AlexNet (adapted to small images), and
their jointly trained Ensemble; plus a tiny MLP for 8x8 smoke tests.

Architectures follow arXiv:2311.13810 v1 (see ../shared/docs/PAPER.md). Layer sizes
after the convolutions are computed from the input shape, so CIFAR-10 (3x32x32) or a
user's own image size works by construction, with no special case:

    LeNet-5 at 1x28x28, K=8:  44,256 parameters   (flatten 16*4*4 = 256)
    AlexNet at 1x28x28, K=8:  94,663,880 parameters (flatten 384*7*7 = 18,816)

A teacher is any ``nn.Module`` that maps float images ``(B, C, H, W)`` in [0, 1] to
class logits ``(B, K)``. To use your own::

    from qdistill.teachers.models import check_teacher
    my_cnn = MyCNN(num_classes=6)
    check_teacher(my_cnn, image_shape=(1, 28, 28), num_classes=6)  # clear error if not

From the command line, ``--teacher FILE.py:NAME [--teacher-weights W.safetensors]`` or
``--teacher model.onnx`` (see :mod:`qdistill.teachers.user`).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import QdistillError, unknown_name


def _conv_out(size: int, kernel: int, padding: int = 0) -> int:
    return size + 2 * padding - kernel + 1


class LeNet5(nn.Module):
    """LeNet-5 as in the paper: Conv(C->6,k5) Tanh AvgPool2, Conv(6->16,k5) Tanh
    AvgPool2, FC ->120 Tanh, 120->84 Tanh, 84->K (44,256 parameters at 1x28x28, K=8)."""

    def __init__(self, num_classes: int, image_shape: tuple[int, int, int] = (1, 28, 28)):
        super().__init__()
        c, h, w = image_shape
        # Spatial size after conv5 -> pool2 -> conv5 -> pool2.
        hs = [_conv_out(_conv_out(s, 5) // 2, 5) // 2 for s in (h, w)]
        if min(hs) < 1:
            raise QdistillError(
                f"LeNet-5 needs images of at least 16x16 pixels, got {h}x{w}; "
                "use the 'mlp' teacher for tiny images such as the 8x8 digits"
            )
        self.features = nn.Sequential(
            nn.Conv2d(c, 6, 5), nn.Tanh(), nn.AvgPool2d(2),
            nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * hs[0] * hs[1], 120), nn.Tanh(),
            nn.Linear(120, 84), nn.Tanh(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class AlexNet(nn.Module):
    """AlexNet adapted to 28x28x1 as in the paper: Conv(C->64,k3,p1) ReLU MaxPool2,
    Conv(64->192,k3,p1) ReLU MaxPool2, Conv(192->384,k3,p1) ReLU, Dropout,
    FC ->4096 ReLU, Dropout, 4096->4096 ReLU, 4096->K (94,663,880 parameters at
    1x28x28, K=8; 77M of them in the first FC layer)."""

    def __init__(self, num_classes: int, image_shape: tuple[int, int, int] = (1, 28, 28)):
        super().__init__()
        c, h, w = image_shape
        hs = [(s // 2) // 2 for s in (h, w)]  # k3/p1 convs keep the size; two pools halve it
        if min(hs) < 1:
            raise QdistillError(f"AlexNet needs images of at least 4x4 pixels, got {h}x{w}")
        self.features = nn.Sequential(
            nn.Conv2d(c, 64, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(64, 192, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(),
            nn.Linear(384 * hs[0] * hs[1], 4096), nn.ReLU(inplace=True),
            nn.Dropout(),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class Ensemble(nn.Module):
    """Logits = (AlexNet + LeNet-5) / 2, both members trained jointly from scratch on
    the averaged logits (the paper's ensemble; 94,708,136 parameters at 1x28x28, K=8)."""

    def __init__(self, num_classes: int, image_shape: tuple[int, int, int] = (1, 28, 28)):
        super().__init__()
        self.alexnet = AlexNet(num_classes, image_shape)
        self.lenet = LeNet5(num_classes, image_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.alexnet(x) + self.lenet(x)) / 2


class MLP(nn.Module):
    """A small MLP (flatten -> 256 ReLU -> K) for tiny images and smoke tests; not in
    the paper."""

    def __init__(self, num_classes: int, image_shape: tuple[int, int, int] = (1, 28, 28)):
        super().__init__()
        c, h, w = image_shape
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(c * h * w, 256), nn.ReLU(), nn.Linear(256, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# An explicit table, not an import-time registry: a user's own module is passed as an
# object (see check_teacher), not registered by name.
TEACHERS: dict[str, type[nn.Module]] = {
    "lenet": LeNet5,
    "alexnet": AlexNet,
    "ensemble": Ensemble,
    "mlp": MLP,
}


def build_teacher(
    name: str, num_classes: int, image_shape: tuple[int, int, int] = (1, 28, 28)
) -> nn.Module:
    """Build an untrained teacher by name (``lenet``, ``alexnet``, ``ensemble``, ``mlp``)."""
    if name.startswith("py:"):  # a FILE.py:NAME teacher's checkpoint (qdistill.teachers.user)
        raise QdistillError(f"teacher {name} is your own module: it is rebuilt from its "
                            "file, so use it as --teacher FILE.py:NAME")
    if name not in TEACHERS:
        raise unknown_name("teacher", name, TEACHERS)
    if num_classes < 2:
        raise QdistillError(f"a teacher needs at least 2 classes, got {num_classes}")
    return TEACHERS[name](num_classes, tuple(image_shape))


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (all, or only those with requires_grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def check_teacher(model: nn.Module, image_shape: tuple[int, int, int], num_classes: int) -> None:
    """Check that ``model`` maps (B, *image_shape) float images to (B, num_classes)
    logits; raise a QdistillError (one line) saying what it returned otherwise.

    The message names the teacher by its ``teacher_label`` attribute when it has one
    (``my_teacher.py:SmallCNN``, ``model.onnx``), else by its class name.
    """
    name = getattr(model, "teacher_label", None) or type(model).__name__
    shape = tuple(int(s) for s in image_shape)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *shape, device=device))
    except QdistillError:
        raise
    except Exception as exc:  # the user's module: report what it rejected, on one line
        detail = " ".join(str(exc).split())
        raise QdistillError(
            f"teacher {name} failed on input of shape (2, {shape}) (the task's images, "
            f"C x H x W = {shape}): {type(exc).__name__}: {detail}"
        ) from exc
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, num_classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise QdistillError(
            f"teacher {name} must return logits of shape (batch, {num_classes}) for the "
            f"task's {num_classes} classes; got {got} for a batch of 2 images {shape}"
        )
