"""The shared training loop: selection on validation, determinism, resume, NaN/inf stop."""

import json
import math
import re
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from qdistill.config import TrainConfig
from qdistill.errors import CheckpointError, QdistillError
from qdistill.training.evaluation import NonFiniteOutputs, evaluate
from qdistill.training.fit import fit


def _blobs(n: int, seed: int) -> SimpleNamespace:
    """Two Gaussian blobs as 1x4x4 uint8 'images' (class = which blob)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = (torch.randn(n, 1, 4, 4, generator=g) * 30 + 100 + 60 * y.view(-1, 1, 1, 1))
    return SimpleNamespace(images=x.clamp(0, 255).to(torch.uint8), labels=y)


def _model() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Dropout(0.2), nn.ReLU(),
                         nn.Linear(8, 2))


def _fit(out=None, epochs=4, **kw):
    torch.manual_seed(123)
    model = _model()
    cfg = TrainConfig(epochs=epochs, batch_size=16, lr=1e-2, seed=7, device="cpu")
    res = fit(model, _blobs(256, 0), _blobs(64, 1), _blobs(64, 2), cfg, out_dir=out, **kw)
    return model, res


def test_learns_and_selects_on_validation(tmp_path):
    model, res = _fit(tmp_path)
    assert res.test_acc > 0.85
    best = max(range(len(res.history)), key=lambda i: (res.history[i]["val_acc"], -i))
    assert res.best_epoch == best + 1
    assert res.test_acc == res.history[best]["test_acc"]
    assert res.paper_best_test_acc == max(h["test_acc"] for h in res.history)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]
    assert set(json.loads(lines[0])) == {"epoch", "train_loss", "train_acc", "val_acc",
                                         "test_acc", "seconds"}


def test_best_weights_are_a_copy_not_the_live_ones(tmp_path):
    # The weights kept (in memory, best.safetensors and last's copy) are the selected epoch's.
    model, res = _fit(tmp_path, epochs=3)
    from qdistill.training import checkpoint
    tensors, meta = checkpoint.load(tmp_path / "best")
    last, _ = checkpoint.load(tmp_path / "last")
    best_from_last = {k[5:]: v for k, v in last.items() if k.startswith("best.")}
    for k, v in model.state_dict().items():
        assert torch.equal(tensors[k], v) and torch.equal(best_from_last[k], v)
    assert meta["metrics"]["best_epoch"] == res.best_epoch


def test_same_seed_same_numbers():
    _, a = _fit()
    _, b = _fit()
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in a.history]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in b.history]


def test_resume_same_run_after_interrupt(tmp_path):
    _, full = _fit(tmp_path / "full", epochs=4)

    class Stop(Exception):
        pass

    calls = {"n": 0}

    def dying_loss(logits, y, soft):
        calls["n"] += 1
        if calls["n"] == 16 * 2 + 5:  # in the middle of epoch 3 (16 steps per epoch)
            raise Stop
        return nn.functional.cross_entropy(logits, y)

    with pytest.raises(Stop):
        _fit(tmp_path / "part", epochs=4, loss_fn=dying_loss)
    assert json.loads((tmp_path / "part" / "last.json").read_text())["epoch"] == 2
    _, resumed = _fit(tmp_path / "part", epochs=4)
    drop = [{k: v for k, v in h.items() if k != "seconds"} for h in full.history]
    assert drop == [{k: v for k, v in h.items() if k != "seconds"} for h in resumed.history]


def test_other_run_in_same_dir_refused(tmp_path):
    _fit(tmp_path, epochs=1)
    with pytest.raises(CheckpointError, match="different run"):
        _fit(tmp_path, epochs=1, run_meta={"arch": "other"})


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_loss_stops_with_clear_error(tmp_path, value):
    def bad_loss(logits, y, soft):
        return nn.functional.cross_entropy(logits, y) + value

    with pytest.raises(QdistillError, match=re.escape(
            f"training loss became non-finite (NaN or inf: {value}) in epoch 1")):
        _fit(tmp_path, loss_fn=bad_loss)
    assert not (tmp_path / "last.safetensors").exists()


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_evaluate_refuses_nan_and_inf_outputs(value):
    # An overflow gives NaN with one CPU's kernels and +-inf with another's: both are
    # refused, and an accuracy is never computed from them.
    model = _model().eval()
    with torch.no_grad():
        model[-1].bias[0] = value
    with pytest.raises(NonFiniteOutputs, match=r"non-finite \(NaN or inf\) outputs"):
        evaluate(model, _blobs(8, 0).images, _blobs(8, 0).labels)


def test_soft_targets_reach_the_loss():
    seen = []

    def loss(logits, y, soft):
        seen.append(soft.clone())
        return nn.functional.cross_entropy(logits, y)

    soft = torch.arange(256, dtype=torch.float32).view(-1, 1).repeat(1, 2)
    _fit(epochs=1, loss_fn=loss, soft_targets=soft)
    got = torch.cat(seen)[:, 0].long()
    assert sorted(got.tolist()) == list(range(256))
