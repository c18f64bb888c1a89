"""Every KD loss against a hand computation (numpy, written from the papers' formulas),
its options, and a loss with parameters trained, checkpointed and resumed."""

import json

import numpy as np
import pytest
import torch

from qdistill.cli.parser import main
from qdistill.errors import ConfigError
from qdistill.losses import LOSSES, build_loss

pytestmark = pytest.mark.usefixtures("isolated_data")  # see conftest.py


def softmax(x):
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def ce(s, y):
    return float(np.mean(-np.log(softmax(s)[np.arange(len(y)), y])))


def kl(p, q):
    return float(np.mean(np.sum(p * (np.log(p) - np.log(q)), 1)))


@pytest.fixture
def batch():
    g = np.random.default_rng(3)
    s, t = g.normal(size=(6, 5)) * 2, g.normal(size=(6, 5)) * 3
    return s, t, np.array([0, 1, 2, 3, 4, 1])


def run(name, s, t, y, **kw):
    opts = {k: kw.pop(k) for k in list(kw) if k not in ("temperature", "alpha")}
    loss = build_loss(name, options=opts, **kw)
    return loss(torch.tensor(s), torch.tensor(y), torch.tensor(t)).item()


@pytest.mark.parametrize("T,alpha,beta", [(1.0, 0.5, 8.0), (4.0, 0.9, 2.0)])
def test_decoupled_kd(batch, T, alpha, beta):
    s, t, y = batch
    p, q = softmax(t / T), softmax(s / T)
    rows = np.arange(len(y))
    bt = np.stack([p[rows, y], 1 - p[rows, y]], 1)
    bs = np.stack([q[rows, y], 1 - q[rows, y]], 1)
    nckd = 0.0
    for i in rows:  # the distributions over the non-target classes, renormalised
        keep = np.arange(5) != y[i]
        pn, qn = p[i, keep] / p[i, keep].sum(), q[i, keep] / q[i, keep].sum()
        nckd += np.sum(pn * (np.log(pn) - np.log(qn))) / len(y)
    want = (1 - alpha) * ce(s, y) + alpha * T * T * (kl(bt, bs) + beta * nckd)
    assert run("dkd", s, t, y, temperature=T, alpha=alpha, beta=beta) == pytest.approx(
        want, rel=1e-9)


def test_logit_standardised_kd(batch):
    s, t, y = batch
    z = lambda x: (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)  # noqa: E731
    T, alpha = 2.0, 0.7
    want = (1 - alpha) * ce(s, y) + alpha * T * T * kl(softmax(z(t) / T), softmax(z(s) / T))
    assert run("lskd", s, t, y, temperature=T, alpha=alpha) == pytest.approx(want, rel=1e-6)
    # Only the shape of the logits matters: a student scaled and shifted matches as well.
    assert run("lskd", 3 * t + 1, t, y, temperature=T, alpha=1.0) == pytest.approx(0, abs=1e-9)


def test_learned_scale_and_pseudo_labels(batch):
    s, t, y = batch
    T, alpha = 3.0, 0.6
    hinton = (1 - alpha) * ce(s, y) + alpha * T * T * kl(softmax(t / T), softmax(s / T))
    assert run("learned-scale", s, t, y, temperature=T, alpha=alpha) == pytest.approx(hinton)
    scaled = (1 - alpha) * ce(s, y) + alpha * T * T * kl(softmax(t / T), softmax(2.5 * s / T))
    assert run("learned-scale", s, t, y, temperature=T, alpha=alpha,
               init_scale=2.5) == pytest.approx(scaled, rel=1e-6)
    want = (1 - alpha) * ce(s, y) + alpha * ce(s, t.argmax(1))
    assert run("pseudo", s, t, y, temperature=T, alpha=alpha) == pytest.approx(want)
    assert run("pseudo", s, t, y, temperature=9.0, alpha=1.0) == pytest.approx(
        ce(s, t.argmax(1)))  # T plays no part; alpha = 1 never reads the labels


def test_options_are_checked():
    assert set(LOSSES) >= {"hinton", "paper", "dkd", "lskd", "learned-scale", "pseudo"}
    with pytest.raises(ConfigError, match="gamma: not an option of the 'dkd' loss; it "
                                          "takes: beta, tckd"):
        build_loss("dkd", options={"gamma": 1.0})
    with pytest.raises(ConfigError, match="init_scale must be > 0"):
        build_loss("learned-scale", options={"init_scale": 0.0})


STUDENT = ["distill", "--student", "paper-v2", "--qubits", "4", "--dataset", "digits",
           "--classes", "0-3", "--train-per-class", "20", "--test-per-class", "10",
           "--val-per-class", "5", "--device", "cpu", "--teacher", "mlp",
           "--teacher-epochs", "1"]


def test_loss_options_from_the_cli(tmp_path, capsys):
    run_dir = tmp_path / "dkd"
    assert main([*STUDENT, "--epochs", "1", "--loss", "dkd", "--loss-opt", "beta=2",
                 "--out", str(run_dir)]) == 0
    kd = json.loads((run_dir / "config.json").read_text())["config"]["kd"]
    assert kd["variant"] == "dkd" and kd["options"] == {"beta": 2.0}
    capsys.readouterr()
    assert main([*STUDENT, "--loss", "dkd", "--loss-opt", "gamma=1",
                 "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not an option of the 'dkd' loss" in err[0]
    assert main([*STUDENT, "--loss-opt", "beta", "--out", str(tmp_path / "x")]) == 2
    assert "--loss-opt 'beta': give KEY=VALUE" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_loss_with_parameters_trains_checkpoints_and_resumes(tmp_path):
    from safetensors.torch import load_file

    from qdistill.config import DistillConfig, load_config
    from qdistill.distillation.run import run_distill

    cfg = load_config(DistillConfig, None, [
        "student.name=paper-v2", "student.qubits=4", "data.dataset=digits",
        "data.classes=0-3", "data.train_per_class=20", "data.test_per_class=10",
        "data.val_per_class=5", "train.device=cpu", "kd.teacher=mlp", "kd.teacher_epochs=1",
        "kd.variant=learned-scale", "train.epochs=2", "train.lr=0.05"])
    full, part = tmp_path / "full", tmp_path / "part"
    run_distill(cfg, full)
    scale = load_file(str(full / "last.safetensors"))["loss.log_scale"]
    assert scale.item() != 0.0  # it moved from log(1)

    class Stop(Exception):
        pass

    def stop(m):
        if m["epoch"] == 1:
            raise Stop
    with pytest.raises(Stop):
        run_distill(cfg, part, callbacks=[stop])
    run_distill(cfg, part)  # resumes epoch 2 with the loss's state restored
    a, b = load_file(str(full / "last.safetensors")), load_file(str(part / "last.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_hint_is_hinton_plus_the_projected_circuit_input_against_the_features(batch):
    """HintKD against a hand computation: the Hinton terms on the first K soft-target
    columns, plus beta * mean((W z + b - f)^2) with z read off the student's circuit."""
    s, t, y = batch
    T, alpha, beta = 2.0, 0.7, 0.5
    g = np.random.default_rng(5)
    z, f = g.normal(size=(6, 3)), g.normal(size=(6, 4))  # circuit input, features
    W, b = g.normal(size=(4, 3)), g.normal(size=4)

    class Tiny(torch.nn.Module):  # a "student" whose circuit sees z
        def __init__(self):
            super().__init__()
            self.circuit = torch.nn.Identity()

    student = Tiny()
    loss = build_loss("hint", temperature=T, alpha=alpha, options={"beta": beta})
    loss.attach(student, 3, 4)
    loss.double()  # the batch is float64
    with torch.no_grad():
        loss.projection.weight.copy_(torch.tensor(W))
        loss.projection.bias.copy_(torch.tensor(b))
    student.circuit(torch.tensor(z))  # what the student's forward does
    got = loss(torch.tensor(s), torch.tensor(y), torch.tensor(np.hstack([t, f]))).item()
    want = (1 - alpha) * ce(s, y) + alpha * T * T * kl(softmax(t / T), softmax(s / T)) \
        + beta * float(np.mean((z @ W.T + b - f) ** 2))
    assert got == pytest.approx(want, rel=1e-6)
    with pytest.raises(ConfigError, match="beta must be >= 0"):
        build_loss("hint", options={"beta": -1.0})


def test_hint_distils_from_the_teachers_features_and_needs_a_linear_teacher(tmp_path):
    from safetensors.torch import load_file

    from qdistill.errors import QdistillError
    from qdistill.losses.hint import teacher_with_features

    run_dir = tmp_path / "hint"
    assert main([*STUDENT, "--epochs", "1", "--loss", "hint", "--loss-opt", "beta=0.5",
                 "--out", str(run_dir)]) == 0
    weights = load_file(str(run_dir / "last.safetensors"))
    # paper-v2 FC + amplitude at 4 qubits: 16 circuit inputs; the MLP teacher's
    # penultimate layer: 256 features
    assert tuple(weights["loss.projection.weight"].shape) == (256, 16)
    with pytest.raises(QdistillError, match="no nn.Linear"):
        teacher_with_features(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.ReLU()))


def test_the_hint_loss_leaves_no_hook_on_the_trained_student():
    from qdistill.api import distill

    res = distill("paper-v2", "mlp", "digits", classes="0-3", qubits=4, loss="hint",
                  train_per_class=20, test_per_class=10, val_per_class=5, epochs=1,
                  teacher_epochs=1, device="cpu")
    assert not res.student.circuit._forward_pre_hooks
    res.student(torch.zeros(2, *res.meta["image_shape"]))  # and it still runs
