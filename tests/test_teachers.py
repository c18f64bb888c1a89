"""Teachers: the paper's parameter counts, shapes, real training, checkpoint round trip."""

import pytest
import torch
from torch import nn

from qdistill.errors import CheckpointError, QdistillError
from qdistill.teachers.models import build_teacher, check_teacher, count_parameters
from qdistill.training import checkpoint


def test_paper_parameter_counts():
    # Hand-computed from PAPER.md's layer list (see teachers.py docstring).
    assert count_parameters(build_teacher("lenet", 8)) == 44_256
    assert count_parameters(build_teacher("alexnet", 8)) == 94_663_880
    assert count_parameters(build_teacher("ensemble", 8)) == 44_256 + 94_663_880


@pytest.mark.parametrize("arch", ["lenet", "alexnet", "ensemble", "mlp"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_forward_shapes(arch, shape):
    model = build_teacher(arch, 6, shape)
    assert model(torch.rand(3, *shape)).shape == (3, 6)


def test_lenet_on_cifar_shape_by_construction():
    # 3x32x32: conv5 -> 28, pool -> 14, conv5 -> 10, pool -> 5: flatten 16*5*5 = 400.
    model = build_teacher("lenet", 10, (3, 32, 32))
    assert model.classifier[1].in_features == 400


def test_errors_are_clear():
    with pytest.raises(QdistillError, match="valid: alexnet, ensemble, lenet, mlp"):
        build_teacher("resnet", 6)
    with pytest.raises(QdistillError, match="at least 16x16"):
        build_teacher("lenet", 10, (1, 8, 8))
    with pytest.raises(QdistillError, match="at least 2 classes"):
        build_teacher("lenet", 1)


def test_check_teacher_user_module():
    good = nn.Sequential(nn.Flatten(), nn.Linear(784, 6))
    check_teacher(good, (1, 28, 28), 6)
    with pytest.raises(QdistillError, match=r"shape \(batch, 6\)"):
        check_teacher(nn.Sequential(nn.Flatten(), nn.Linear(784, 4)), (1, 28, 28), 6)
    with pytest.raises(QdistillError, match="failed on input"):
        check_teacher(nn.Linear(3, 6), (1, 28, 28), 6)


def test_checkpoint_round_trip_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model = build_teacher("lenet", 6)
    x = torch.rand(5, 1, 28, 28)
    checkpoint.save(tmp_path / "m", model.state_dict(), {"arch": "lenet", "num_classes": 6})
    tensors, meta = checkpoint.load(tmp_path / "m", expect={"arch": "lenet"})
    other = build_teacher("lenet", 6)
    checkpoint.load_into(other, tensors, "m")
    assert torch.equal(model.eval()(x), other.eval()(x))
    assert meta["num_classes"] == 6


def test_checkpoint_mismatches_refused(tmp_path):
    model = build_teacher("lenet", 6)
    checkpoint.save(tmp_path / "m", model.state_dict(), {"arch": "lenet", "classes": [0, 1]})
    with pytest.raises(CheckpointError, match="classes"):
        checkpoint.load(tmp_path / "m", expect={"classes": [0, 1, 2]})
    tensors, _ = checkpoint.load(tmp_path / "m")
    with pytest.raises(CheckpointError, match="does not fit this model"):
        checkpoint.load_into(build_teacher("lenet", 8), tensors, "m")
    # A truncated weights file is detected, never half-loaded.
    w = tmp_path / "m.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated or replaced"):
        checkpoint.load(tmp_path / "m")
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoint.load(tmp_path / "nothing")
