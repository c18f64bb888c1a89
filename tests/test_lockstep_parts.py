"""The lockstep proxies' fast paths against the modules they stand in for, and the
planner that splits a grid into lockstep groups (qdistill.lockstep)."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from qdistill.config import DataConfig, DistillConfig, StudentConfig, TrainConfig
from qdistill.lockstep import lockstep_key, makespan, plan_groups
from qdistill.lockstep.proxies import Conv2dProxy, MaxPoolProxy


@pytest.mark.parametrize("kernel, shape", [(2, (6, 3, 24, 24)), (2, (4, 2, 9, 7)),
                                           (3, (5, 2, 10, 12))])
def test_max_pool_without_gradient_gives_the_pooling_values(kernel, shape):
    pool = nn.MaxPool2d(kernel)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    x[0, 0, :4, :4] = 0.25  # ties
    x[1, 0, 0, 0] = float("nan")
    x[1, 1, :kernel, :kernel] = float("-inf")
    proxy = MaxPoolProxy(pool)
    assert proxy.k == (kernel, kernel)
    with torch.no_grad():
        got, want = proxy(x), pool(x)
    assert got.shape == want.shape
    assert torch.equal(got.isnan(), want.isnan())
    assert torch.equal(torch.nan_to_num(got), torch.nan_to_num(want))


def test_max_pool_with_gradient_is_the_pooling_itself():
    x = torch.zeros(2, 3, 8, 8)  # all tied: the gradient goes to each window's first
    x[0, 0, 1, 1] = 1.0
    x.requires_grad_(True)
    pool = nn.MaxPool2d(2)
    MaxPoolProxy(pool)(x).sum().backward()
    got = x.grad.clone()
    x.grad = None
    pool(x).sum().backward()
    assert torch.equal(got, x.grad)
    assert got[0, 0, 1, 1] == 1 and got[0, 0, 0, 0] == 0 and got[0, 1, 0, 0] == 1
    # overlapping windows, padding: always the pooling
    assert MaxPoolProxy(nn.MaxPool2d(3, stride=2)).k is None
    assert MaxPoolProxy(nn.MaxPool2d(2, padding=1)).k is None


@pytest.mark.parametrize("stride, padding, dilation, b", [(1, 0, 1, 1), (2, 1, 1, 3),
                                                          (1, 2, 2, 2)])
def test_first_layer_convolution_matches_each_runs_own(stride, padding, dilation, b):
    """The unfolded path (an input without gradient): outputs and weight / bias
    gradients against each run's F.conv2d."""
    R, ci, co = 3, 2, 4
    g = torch.Generator().manual_seed(1)
    conv = nn.Conv2d(ci, co, 3, stride=stride, padding=padding, dilation=dilation)
    weight = torch.randn(R, co, ci, 3, 3, generator=g).requires_grad_(True)
    bias = torch.randn(R, co, generator=g).requires_grad_(True)
    x = torch.randn(R * b, ci, 11, 10, generator=g)
    out = Conv2dProxy(SimpleNamespace(R=R), conv, weight, bias)(x)
    up = torch.randn(out.shape, generator=g)
    (out * up).sum().backward()
    w_ref = weight.detach().clone().requires_grad_(True)
    b_ref = bias.detach().clone().requires_grad_(True)
    ref = torch.cat([F.conv2d(x[r * b:(r + 1) * b], w_ref[r], b_ref[r], stride, padding,
                              dilation) for r in range(R)])
    (ref * up).sum().backward()
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(weight.grad, w_ref.grad, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(bias.grad, b_ref.grad, rtol=1e-5, atol=1e-4)


def test_makespan_is_the_busiest_worker():
    # groups cost size + 6 run-steps; 24, 24 | 12, 12 on 2 workers: 30 + 18 each
    assert makespan([24, 24, 12, 12], 2) == 48
    assert makespan([12] * 6, 2) == 54
    assert makespan([24, 24, 24], 2) == 60
    assert makespan([5], 1) == 11


def _cfg(dataset: str, qubits: int, seed: int) -> DistillConfig:
    return DistillConfig(student=StudentConfig(name="paper-v2", qubits=qubits,
                                               reduction="crop"),
                         data=DataConfig(dataset=dataset, classes="0-3"),
                         train=TrainConfig(seed=seed, device="cpu"))


def test_groups_are_balanced_over_workers_and_share_datasets_of_one_shape(tmp_path):
    """Runs on two datasets of the same image shape and class count share a group; the
    largest groups are halved while that shortens the grid."""
    rng = np.random.default_rng(0)

    def npz(name: str, side: int) -> str:
        path = tmp_path / f"{name}.npz"
        np.savez(path, x_train=rng.integers(0, 256, (40, side, side), dtype=np.uint8),
                 y_train=np.arange(40) % 10, x_test=rng.integers(0, 256, (20, side, side),
                                                                dtype=np.uint8),
                 y_test=np.arange(20) % 10)
        return str(path)

    same, other = npz("same", 8), npz("other", 12)  # digits: 8x8, 10 classes
    assert lockstep_key(_cfg("digits", 3, 0)) == lockstep_key(_cfg(same, 3, 1))
    assert lockstep_key(_cfg("digits", 3, 0)) != lockstep_key(_cfg(other, 3, 0))
    items = [(f"{q}-{ds}-{s}", _cfg(ds, q, s)) for q in (2, 3, 4)
             for ds in ("digits", same) for s in range(12)]
    groups = plan_groups(items, workers=2, cap=lambda cfg: 256)
    assert [len(g) for g in groups] == [24, 24, 12, 12]  # not 3 x 24 (60 > 48)
    assert len({r.split("-")[0] for g in groups[2:] for r in g}) == 1  # one halved
    assert sorted(r for g in groups for r in g) == sorted(r for r, _ in items)
