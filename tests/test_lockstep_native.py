"""The native lockstep kernel (qdistill.lockstep.native) against the per-layer proxies
it stands in for (PyTorch's own kernels): outputs and every gradient, max-pool ties
and NaN, dropout masks, the fallbacks, and its use in a lockstep group.

The kernel sums in another order than PyTorch's kernels, so values agree to float
rounding (relative 1e-5 here), not bit for bit; where no sum is involved (which element
a max pool picks, hence where its gradient goes) they agree exactly.
"""

import logging

import pytest
import torch
from torch import nn

from qdistill.config import StudentConfig
from qdistill.lockstep import native
from qdistill.lockstep.proxies import Conv2dProxy, DropoutProxy, LinearProxy, MaxPoolProxy
from qdistill.lockstep.twin import Twin
from qdistill.students import build_student

pytestmark = pytest.mark.skipif(native._compiler() is None, reason="no C compiler on PATH")

RTOL = 1e-5


@pytest.fixture
def lib():
    lib = native.library()
    assert lib is not None, "a C compiler is on PATH, so the kernel builds and passes its check"
    return lib


@pytest.mark.parametrize("R, image, b", [(1, (1, 28, 28), 1), (4, (1, 28, 28), 2),
                                         (3, (3, 16, 20), 5), (2, (2, 13, 11), 17)])
@pytest.mark.parametrize("x_grad", [False, True])
def test_outputs_and_gradients_match_the_proxies(lib, R, image, b, x_grad):
    chain, gens = native.reference_pair(R, image, seed=R + b)
    x = torch.rand(R * b, *image, generator=torch.Generator().manual_seed(b))
    diff = native.compare(lib, chain, gens, x, x_grad=x_grad)
    assert len(diff) == 1 + 7 + x_grad  # the output, 7 parameter gradients, the input's
    assert max(diff.values()) < RTOL, diff


def test_a_chain_of_linear_layers(lib):
    """An MLP (Linear, ReLU, Dropout, Linear, ReLU) on flat inputs, its input gradient
    needed (a chain after other layers)."""
    from types import SimpleNamespace

    R, b = 3, 4
    g = torch.Generator().manual_seed(3)
    twin = SimpleNamespace(R=R, gens=[torch.Generator().manual_seed(r) for r in range(R)])
    chain = nn.Sequential(
        LinearProxy(twin, torch.randn(R, 7, 6, generator=g).requires_grad_(),
                    torch.randn(R, 6, generator=g).requires_grad_()),
        nn.ReLU(), DropoutProxy(twin, 0.3, False),
        LinearProxy(twin, torch.randn(R, 6, 2, generator=g).requires_grad_(),
                    torch.randn(R, 2, generator=g).requires_grad_()), nn.ReLU())
    x = torch.randn(R * b, 7, generator=g)
    diff = native.compare(lib, chain, twin.gens, x, x_grad=True)
    assert len(diff) == 1 + 4 + 1 and max(diff.values()) < RTOL, diff


def _pool_chain(R: int, kernel: int, stride: int) -> tuple[nn.Sequential, list]:
    twin = type("T", (), {"R": R, "gens": [torch.Generator() for _ in range(R)]})()
    g = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(1, 2, 3)
    chain = nn.Sequential(
        Conv2dProxy(twin, conv, torch.randn(R, 2, 1, 3, 3, generator=g).requires_grad_(),
                    torch.randn(R, 2, generator=g).requires_grad_()),
        MaxPoolProxy(nn.MaxPool2d(kernel, stride)), nn.ReLU(), nn.Flatten())
    return chain, twin.gens


@pytest.mark.parametrize("kernel, stride", [(2, 2), (3, 2), (2, 3)])
def test_max_pool_ties_and_nan_route_like_pytorch(lib, kernel, stride):
    """Inputs of three levels, passed through by the convolution exactly (one weight
    1, the rest 0): most windows hold a tied maximum. The gradient goes to the first
    maximum of each window, as PyTorch's; a NaN wins its window. Exact: no rounding."""
    R = 2
    chain, gens = _pool_chain(R, kernel, stride)
    levels = torch.randint(0, 3, (R * 3, 1, 11, 11), generator=torch.Generator().manual_seed(1))
    x = levels.float() / 2 - 0.5
    x[1, 0, 4, 4] = float("nan")
    weight, bias = chain[0].weight, chain[0].bias
    with torch.no_grad():
        weight.zero_()
        weight[:, :, :, 1, 1] = 1.0
        bias.zero_()
    outs = []
    for run in (native.NativeSequential(chain, lib), chain):
        x_in = x.clone().requires_grad_()
        out = run(x_in)
        w = torch.linspace(-1, 1, out.numel()).view_as(out)
        (gx,) = torch.autograd.grad((torch.nan_to_num(out) * w).sum(), [x_in])
        outs.append((out, gx))
    (o1, g1), (o2, g2) = outs
    assert torch.equal(o1.isnan(), o2.isnan()) and bool(o1.isnan().any())
    assert torch.equal(torch.nan_to_num(o1), torch.nan_to_num(o2))
    assert torch.equal(torch.nan_to_num(g1), torch.nan_to_num(g2))


def test_dropout_masks_are_each_runs_own_draws(lib):
    """The kernel's dropout noise comes from each run's generator exactly as the
    proxies draw it: run the chain twice from the same generator states, once each way,
    and the outputs agree (a different mask would move them by far more than rounding);
    and the generators end in the same state."""
    chain, gens = native.reference_pair(3, (1, 16, 16), seed=5)
    x = torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    start = [g.get_state() for g in gens]
    ends, outs = [], []
    for run in (native.NativeSequential(chain, lib), chain):
        for g, st in zip(gens, start, strict=True):
            g.set_state(st)
        outs.append(run(x).detach())
        ends.append([g.get_state() for g in gens])
    assert torch.allclose(outs[0], outs[1], rtol=RTOL, atol=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(*ends, strict=True))
    chain.eval()  # no dropout in evaluation: nothing drawn
    before = [g.get_state() for g in gens]
    native.NativeSequential(chain, lib).eval()(x)
    assert all(torch.equal(a, g.get_state()) for a, g in zip(before, gens, strict=True))


def test_what_the_kernel_does_not_run_goes_through_the_proxies(lib):
    chain, gens = native.reference_pair(2, (1, 12, 12))
    seq = native.NativeSequential(chain, lib)
    x64 = torch.rand(2, 1, 12, 12, dtype=torch.float64)
    assert seq._plan(x64) is None  # float64: PyTorch's kernels
    assert seq._plan(torch.rand(3, 1, 12, 12)) is None  # 3 rows for 2 runs
    assert seq._plan(torch.rand(2, 1, 12, 12)) is not None
    assert seq._plan(torch.rand(2, 1, 3, 3)) is None  # smaller than the kernels
    for bad in (nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(1, 2, 3, stride=2),
                nn.MaxPool2d(2, padding=1), nn.BatchNorm2d(2), nn.Tanh(),
                nn.Dropout(0.5, inplace=True), nn.Flatten(0)):
        assert not native.supported(nn.Sequential(nn.Conv2d(1, 2, 3), bad)), bad
    assert not native.supported(nn.Sequential(nn.ReLU(), nn.Flatten()))  # no weights
    assert native.supported(nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.ReLU(),
                                          nn.Dropout2d(), nn.Flatten(), nn.Linear(8, 2)))


def test_one_backward_per_forward(lib):
    chain, _ = native.reference_pair(2, (1, 12, 12))
    out = native.NativeSequential(chain, lib)(torch.rand(2, 1, 12, 12))
    out.sum().backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="one backward per forward"):
        out.sum().backward()


def test_switched_off_or_unbuildable_means_the_proxies(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv(native.ENV_SWITCH, "0")
    assert native.library() is None
    monkeypatch.delenv(native.ENV_SWITCH)
    # A compiler that fails: a warning, no kernel, nothing raised.
    monkeypatch.setenv("CC", "false")
    monkeypatch.setattr(native, "_compiler", lambda: "/bin/false")
    monkeypatch.setenv("QDISTILL_CACHE_DIR", str(tmp_path))
    native._built.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger=native.log.name):
            assert native._built() is None
        assert "could not build or load" in caplog.text
    finally:
        native._built.cache_clear()


def test_a_miscompiled_kernel_fails_its_check(lib, monkeypatch):
    """The check at load time compares with PyTorch; a kernel giving other numbers is
    refused (here: every weight gradient doubled)."""
    assert native._self_test(lib) is None
    real = native.NativeChain.backward

    def doubled(ctx, grad):
        return tuple(None if g is None else 2 * g for g in real(ctx, grad))

    monkeypatch.setattr(native.NativeChain, "backward", staticmethod(doubled))
    assert "differs from PyTorch" in native._self_test(lib)


def test_the_paper_v1_twin_uses_it():
    """paper-v1's front end (Conv, MaxPool, ReLU, Conv, Dropout2d, MaxPool, ReLU,
    Flatten, Linear, ReLU, Dropout, Linear) is one native chain in the twin; with the
    switch off, the per-layer proxies."""
    models = [build_student(StudentConfig(name="paper-v1", qubits=3, head="paper"), 6,
                            (1, 28, 28)) for _ in range(2)]
    gens = [torch.Generator() for _ in range(2)]
    assert isinstance(Twin(models, gens).template.front.net, native.NativeSequential)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(native.ENV_SWITCH, "0")
        net = Twin(models, gens).template.front.net
    assert isinstance(net, nn.Sequential) and isinstance(net[0], Conv2dProxy)
    assert isinstance(net[8], LinearProxy) and isinstance(net[4], DropoutProxy)
