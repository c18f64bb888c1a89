"""KDLoss against a direct computation and its known limits; cached teacher logits."""

import math

import pytest
import torch
from torch import nn

from qdistill.distillation.soft_targets import teacher_logits
from qdistill.errors import QdistillError
from qdistill.losses import KDLoss


def _direct(s, t, y, T, alpha, variant):
    """Textbook formula written out sample by sample, in float64."""
    s, t = s.double(), t.double()
    n = len(y)
    ce = -sum(torch.log_softmax(s[i], 0)[y[i]] for i in range(n)) / n
    kl = 0.0
    for i in range(n):
        p = torch.softmax(t[i] / T, 0)
        q = torch.softmax(s[i] / T, 0)
        kl += float((p * (p.log() - q.log())).sum())
    kl /= n
    hard = 1 - alpha if variant == "hinton" else 1.0
    return hard * float(ce) + alpha * T * T * kl


@pytest.mark.parametrize("variant", ["hinton", "paper"])
@pytest.mark.parametrize("T,alpha", [(3.0, 0.9), (1.0, 0.5), (7.5, 0.1)])
def test_matches_direct_computation(variant, T, alpha):
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(5, 6, generator=g) * 2, torch.randn(5, 6, generator=g) * 3
    y = torch.tensor([0, 5, 2, 2, 1])
    got = KDLoss(T, alpha, variant)(s, y, t).item()
    assert got == pytest.approx(_direct(s, t, y, T, alpha, variant), rel=1e-5)


def test_known_limits():
    s, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    ce = nn.functional.cross_entropy(s, y)
    assert KDLoss(3.0, 0.0)(s, y, torch.randn(4, 3)).item() == pytest.approx(ce.item())
    # Identical logits: KL = 0, so the loss is the (weighted) CE alone.
    assert KDLoss(3.0, 0.9)(s, y, s.clone()).item() == pytest.approx(0.1 * ce.item(), abs=1e-6)
    assert KDLoss(3.0, 0.9, "paper")(s, y, s.clone()).item() == pytest.approx(ce.item(),
                                                                               abs=1e-6)


def test_student_with_more_outputs_than_classes():
    """The paper-v1 notebook head: CE over all 16 outputs, KL on the named class columns."""
    s, t, y = torch.randn(3, 16), torch.randn(3, 6), torch.tensor([0, 5, 2])
    with pytest.raises(QdistillError, match="class_outputs"):
        KDLoss()(s, y, t)  # never sliced silently
    loss = KDLoss(3.0, 0.9, "paper", class_outputs=list(range(6)))(s, y, t)
    direct = _direct(s[:, :6], t, y, 3.0, 0.9, "paper")
    ce_all = nn.functional.cross_entropy(s, y).item()
    ce_cls = nn.functional.cross_entropy(s[:, :6], y).item()
    assert loss.item() == pytest.approx(direct - ce_cls + ce_all, rel=1e-5)


def test_gradient_flows_to_student_only():
    s = torch.randn(4, 3, requires_grad=True)
    t = torch.randn(4, 3, requires_grad=True)
    KDLoss()(s, torch.tensor([0, 1, 2, 0]), t.detach()).backward()
    assert s.grad is not None and t.grad is None


def test_bad_settings_and_shapes():
    with pytest.raises(QdistillError, match="temperature"):
        KDLoss(0.0)
    with pytest.raises(QdistillError, match="temperature"):
        KDLoss(math.nan)
    with pytest.raises(QdistillError, match="alpha"):
        KDLoss(3.0, 1.5)
    with pytest.raises(QdistillError, match="valid: dkd, hint, hinton, learned-scale, lskd, paper"):
        KDLoss(variant="other")
    with pytest.raises(QdistillError, match="differ"):
        KDLoss()(torch.randn(2, 8), torch.tensor([0, 1]), torch.randn(2, 6))
    with pytest.raises(QdistillError, match="needs the teacher"):
        KDLoss()(torch.randn(2, 6), torch.tensor([0, 1]), None)


def test_teacher_logits_cached_and_keyed(tmp_path, monkeypatch):
    monkeypatch.setenv("QDISTILL_CACHE_DIR", str(tmp_path))
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    calls = {"n": 0}
    teacher.register_forward_hook(lambda *a: calls.__setitem__("n", calls["n"] + 1))
    images = torch.randint(0, 256, (10, 1, 4, 4), dtype=torch.uint8)
    meta = {"weights_sha256": "abc"}
    a = teacher_logits(teacher, meta, images)
    b = teacher_logits(teacher, meta, images)
    assert calls["n"] == 1 and torch.equal(a, b)
    assert torch.allclose(a, teacher(images.float() / 255), atol=1e-6)
    assert not any(p.requires_grad for p in teacher.parameters())  # frozen
    teacher_logits(teacher, meta, images[:5])  # another subset: recomputed
    teacher_logits(teacher, {"weights_sha256": "def"}, images)  # another teacher: recomputed
    assert calls["n"] == 4  # 1 + the direct call above + 2 recomputations
