"""Transfer sets: images the teacher labels softly, whose labels the student never sees."""

import pytest
import torch
import torch.nn.functional as F

from qdistill.cli.parser import main
from qdistill.data import load_raw, make_task
from qdistill.data.core import DataError
from qdistill.distillation import run as student_runs
from qdistill.losses.base import labelled_ce

pytestmark = pytest.mark.usefixtures("isolated_data")  # see conftest.py

DISTILL = ["distill", "--student", "paper-v2", "--qubits", "4", "--dataset", "digits",
           "--classes", "0-3", "--labels-per-class", "10", "--test-per-class", "10",
           "--val-per-class", "5", "--epochs", "1", "--batch-size", "4", "--device", "cpu",
           "--teacher-epochs", "1"]


def test_the_transfer_set_is_the_rest_of_the_training_split_without_labels():
    task = make_task("digits", "0-3", train_per_class=10, val_per_class=5, test_per_class=10,
                     transfer_per_class=20)
    assert len(task.transfer) == 80 and set(task.transfer.labels.tolist()) == {-1}
    used = set(task.train.indices.tolist()) | set(task.val.indices.tolist())
    assert not used & set(task.transfer.indices.tolist())  # disjoint from train and val
    everything = make_task("digits", "0-3", train_per_class=10, val_per_class=5,
                           test_per_class=10, transfer_per_class="all")
    # every training image of the 4 classes but the 15 per class used goes to transfer
    raw = load_raw("digits").train_labels
    assert len(everything.transfer) == int((raw < 4).sum()) - 4 * 15
    assert everything.fingerprint() != task.fingerprint()
    with pytest.raises(DataError, match="give --train-per-class"):
        make_task("digits", "0-3", transfer_per_class=5)
    with pytest.raises(DataError, match="a transfer set of 1000 images requested"):
        make_task("digits", "0-3", train_per_class=10, transfer_per_class=1000)


def test_hidden_labels_add_nothing_to_the_hard_term():
    g = torch.Generator().manual_seed(0)
    out, y = torch.randn(6, 4, generator=g), torch.tensor([0, 1, 2, 3, 1, 0])
    assert torch.equal(labelled_ce(out, y), F.cross_entropy(out, y))  # nothing hidden
    hidden = torch.tensor([0, -1, 2, -1, -1, 0])
    keep = hidden >= 0
    want = F.cross_entropy(out[keep], hidden[keep], reduction="sum") / 6
    torch.testing.assert_close(labelled_ce(out, hidden), want)
    assert labelled_ce(out, torch.full((6,), -1)).item() == 0.0  # not NaN


@pytest.fixture
def captured(monkeypatch):
    """Every (train set, labels a loss saw) of the runs in the test."""
    seen = {"train": [], "labels": []}
    real_fit = student_runs.fit

    def fit(model, train, *args, loss_fn, **kw):
        seen["train"].append(train)

        def spy(logits, labels, soft):
            seen["labels"].append(labels.clone())
            return loss_fn(logits, labels, soft)
        return real_fit(model, train, *args, loss_fn=spy, **kw)
    monkeypatch.setattr(student_runs, "fit", fit)
    return seen


def test_a_transfer_run_never_sees_the_hidden_labels(tmp_path, captured):
    assert main([*DISTILL, "--teacher", "mlp", "--transfer", "unlabelled:15",
                 "--out", str(tmp_path / "kd")]) == 0
    train = captured["train"][0]
    assert len(train) == 40 + 60 and (train.labels[40:] == -1).all()
    labels = torch.cat(captured["labels"])
    assert (labels == -1).sum() == 60 and (labels >= 0).sum() == 40  # one epoch
    # The baseline sees the same labelled images, and no transfer set.
    captured["train"].clear()
    assert main([*DISTILL, "--teacher", "none", "--transfer", "unlabelled:15",
                 "--out", str(tmp_path / "base")]) == 0
    base = captured["train"][0]
    assert len(base) == 40 and torch.equal(base.images, train.images[:40])


def test_augmented_views_are_seeded_unlabelled_and_taught(tmp_path, captured):
    from qdistill.data.augment import augmented_views

    images = make_task("digits", "0-3", train_per_class=5, val_per_class=2).train.images
    a, b = augmented_views(images, 3, seed=1), augmented_views(images, 3, seed=1)
    assert a.shape == (60, 1, 8, 8) and a.dtype == torch.uint8 and torch.equal(a, b)
    assert not torch.equal(a, augmented_views(images, 3, seed=2))
    assert not torch.equal(a[::3], images)  # views, not copies
    # mass is kept roughly (a shift of at most 2 px and 10 degrees on 8x8 digits)
    ratio = a.float().sum() / (3 * images.float().sum())
    assert 0.6 < ratio.item() < 1.2
    assert main([*DISTILL, "--teacher", "mlp", "--transfer", "augmented:2",
                 "--out", str(tmp_path / "aug")]) == 0
    train = captured["train"][0]
    assert len(train) == 40 + 80 and (train.labels[40:] == -1).all()


def test_transfer_is_for_students_and_checked(tmp_path, capsys):
    assert main([*DISTILL, "--teacher", "mlp", "--transfer", "everything",
                 "--out", str(tmp_path / "x")]) == 2
    assert "--transfer 'everything': give unlabelled, unlabelled:N" in capsys.readouterr().err
    assert main(["teacher", "train", "--arch", "mlp", "--dataset", "digits", "--classes",
                 "0-3", "--epochs", "1", "--set", "data.transfer=unlabelled",
                 "--out", str(tmp_path / "t")]) == 2
    assert "a transfer set (data.transfer) is for students" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "t").exists()
