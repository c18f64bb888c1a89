"""The proxies a run-batched twin (twin.py) puts in place of a student's parameterised
leaves: each holds the R runs' parameters stacked along a leading run axis and computes
on the folded batch ``(R*B, ...)`` what the R solo modules compute on their own
batches (the list of proxies and what each does: twin.py's docstring).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from ..quantum.measure import Measurement, probabilities


class Unsupported(Exception):
    """This group cannot be trained in lockstep (the runs are trained solo instead)."""


DROPOUTS = (nn.Dropout, nn.Dropout2d)
OTHER_RANDOM = (nn.Dropout1d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


class LinearProxy(nn.Module):
    def __init__(self, twin: Any, weight_t: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.twin, self.weight_t, self.bias = twin, weight_t, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead, features = x.shape[:-1], x.shape[-1]
        h = x.reshape(self.twin.R, -1, features)
        out = BatchedLinear.apply(h, self.weight_t, self.bias)
        return out.reshape(*lead, self.weight_t.shape[-1])


class BatchedLinear(torch.autograd.Function):
    """``x (R, B, in) @ W (R, in, out) + b (R, out)`` with a hand-written backward.

    At B = 1 the weight gradient is an outer product; autograd's ``bmm`` for it (K = 1,
    a transposed operand) took 2-9 ms at R = 72 (MKL's slow path, worse when the output
    buffer holds denormals), the broadcast product 0.07 ms.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor | None) -> torch.Tensor:
        x = x.contiguous()
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        if bias is None:
            return torch.bmm(x, weight)
        return torch.baddbmm(bias.unsqueeze(1), x, weight)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = torch.bmm(grad, weight.transpose(1, 2))
        if ctx.needs_input_grad[1]:
            gw = (x.transpose(1, 2) * grad if x.shape[1] == 1
                  else torch.bmm(x.transpose(1, 2), grad))
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = grad.sum(1)
        return gx, gw, gb


class Conv2dProxy(nn.Module):
    # Per-run batch from which R plain convolutions beat one grouped one (2-core CPU,
    # R = 12, paper-v1 front end: batch 1 grouped 0.35 ms vs 1.0 ms as a loop; batch
    # 256, 10 -> 20 channels: 83 ms grouped vs 39 ms as a loop).
    LOOP_FROM = 16

    def __init__(self, twin: Any, conv: nn.Conv2d, weight: torch.Tensor,
                 bias: torch.Tensor | None):
        super().__init__()
        self.twin, self.weight, self.bias = twin, weight, bias
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        R = self.twin.R
        b = x.shape[0] // R
        if b >= self.LOOP_FROM:  # big per-run batches (evaluation): one conv per run
            return torch.cat([
                F.conv2d(x[r * b:(r + 1) * b], self.weight[r],
                         self.bias[r] if self.bias is not None else None, self.stride,
                         self.padding, self.dilation) for r in range(R)])
        if not x.requires_grad and isinstance(self.padding, tuple):
            return self._unfolded(x, R, b)
        c, h, w = x.shape[1:]
        folded = x.view(R, b, c, h, w).transpose(0, 1).reshape(b, R * c, h, w)
        weight = self.weight.reshape(-1, *self.weight.shape[2:])
        bias = self.bias.reshape(-1) if self.bias is not None else None
        out = F.conv2d(folded, weight, bias, self.stride, self.padding, self.dilation, R)
        co = self.weight.shape[1]
        return out.view(b, R, co, *out.shape[2:]).transpose(0, 1).reshape(R * b, co,
                                                                          *out.shape[2:])

    def _unfolded(self, x: torch.Tensor, R: int, b: int) -> torch.Tensor:
        """A layer whose input needs no gradient (the first): each run's patches as a
        strided view, one batched GEMM for the forward and one for the weight gradient. The
        grouped convolution's weight-only backward is slow at batch 1: paper-v1's
        1 -> 10 channel layer at R = 12 took 0.41 ms forward + backward grouped, 0.18 ms
        this way (one thread)."""
        (ph, pw), (sh, sw), (dh, dw) = self.padding, self.stride, self.dilation
        if ph or pw:
            x = F.pad(x, (pw, pw, ph, ph))
        x = x.contiguous()
        n, c, h, w = x.shape
        co, _, kh, kw = self.weight.shape[1:]
        oh, ow = (h - dh * (kh - 1) - 1) // sh + 1, (w - dw * (kw - 1) - 1) // sw + 1
        s = x.stride()
        cols = x.as_strided((R, b, c, kh, kw, oh, ow),
                            (b * s[0], s[0], s[1], s[2] * dh, s[3] * dw, s[2] * sh, s[3] * sw))
        cols = cols.permute(0, 2, 3, 4, 1, 5, 6).reshape(R, c * kh * kw, b * oh * ow)
        weight = self.weight.reshape(R, co, c * kh * kw)
        out = (torch.bmm(weight, cols) if self.bias is None
               else torch.baddbmm(self.bias.unsqueeze(-1), weight, cols))
        return out.view(R, co, b, oh, ow).transpose(1, 2).reshape(R * b, co, oh, ow)


class MaxPoolProxy(nn.Module):
    """``nn.MaxPool2d`` with non-overlapping windows (kernel = stride, no padding or
    dilation). Where no gradient is needed (evaluation) the maximum of the k*k shifted
    views, elementwise: the same values as the pooling kernel (a maximum is exact, NaN
    propagates in both), 10x faster on the CPU (12 paper-v1 runs x 113 images,
    10 x 24 x 24: 38 ms pooled, 3.5 ms as views). With a gradient, the pooling itself
    (its backward's choice among tied maxima is the solo run's)."""

    def __init__(self, pool: nn.MaxPool2d):
        super().__init__()
        self.pool = pool
        k, s = _pair(pool.kernel_size), _pair(pool.stride or pool.kernel_size)
        self.k = k if (k == s and _pair(pool.padding) == (0, 0)
                       and _pair(pool.dilation) == (1, 1)
                       and not pool.ceil_mode and not pool.return_indices) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.k is None or (torch.is_grad_enabled() and x.requires_grad) or x.dim() != 4:
            return self.pool(x)
        (kh, kw), (h, w) = self.k, x.shape[2:]
        oh, ow = h // kh, w // kw
        v = x[:, :, :oh * kh, :ow * kw].unflatten(3, (ow, kw)).unflatten(2, (oh, kh))
        out = v[:, :, :, 0, :, 0]
        for i in range(kh):
            for j in range(kw):
                if i or j:
                    out = torch.maximum(out, v[:, :, :, i, :, j])
        return out


def _pair(v: Any) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, tuple | list) else (int(v), int(v))


class DropoutProxy(nn.Module):
    """PyTorch's CPU dropout (``_dropout_impl``), run by run, from each run's generator."""

    def __init__(self, twin: Any, p: float, feature: bool):
        super().__init__()
        self.twin, self.p, self.feature = twin, float(p), feature

    def active(self) -> bool:
        """Whether the layer changes its input (training, 0 < p)."""
        return self.training and self.p != 0

    def noise_shape(self, x_shape: torch.Size) -> tuple[int, ...]:
        """The noise of a folded batch of shape ``x_shape``: ``(R*B, C, 1, 1)`` for
        Dropout2d, ``x_shape`` for Dropout."""
        if self.feature:
            if len(x_shape) != 4:
                raise Unsupported(f"Dropout2d on a {len(x_shape)}-d input")
            return (x_shape[0], x_shape[1], 1, 1)
        return tuple(x_shape)

    def fill_noise(self, noise: torch.Tensor) -> torch.Tensor:
        """Draw every run's noise into ``noise`` (CPU, ``noise_shape``), scaled by
        1 / (1 - p). Each run's draw into its own rows (bernoulli_ fills a slice as it
        fills a new tensor of that shape), then one division for all (elementwise: the
        same values as each run's own div_, without R scalar-to-tensor conversions)."""
        p = self.p
        if p == 1:
            return noise.zero_()
        b = noise.shape[0] // self.twin.R
        for r, g in enumerate(self.twin.gens):
            noise[r * b:(r + 1) * b].bernoulli_(1 - p, generator=g)
        return noise.div_(1 - p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.active() or x.numel() == 0:
            return x
        if self.p == 1:
            return x * torch.zeros((), dtype=x.dtype, device=x.device)
        noise = self.fill_noise(torch.empty(self.noise_shape(x.shape), dtype=x.dtype))
        return x * noise.to(x.device, non_blocking=True)


class MeasurementProxy(nn.Module):
    """Exact: the measurement itself on the folded batch. Shots: exact probabilities,
    then run r sampled by run r's own measurement module (see the module doc)."""

    def __init__(self, twin: Any, measurement: Measurement, runs: list[nn.Module]):
        super().__init__()
        self.twin, self.measurement = twin, measurement
        self.runs = runs  # each run's own Measurement (its generator and seed)
        self.exact = False  # self_check: exact values, whatever the shots

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        m = self.measurement
        if m.shots is None or self.exact and not self.twin.capture:
            return m(state) if m.shots is None else m._readout(probabilities(state, m.wires))
        p = probabilities(state, m.wires)
        if self.twin.capture:
            return p
        return self.sample(p)

    def sample(self, p: torch.Tensor) -> torch.Tensor:
        """The measurement's output from exact probabilities ``p (R*B, K)``: each live
        run's rows sampled by its own measurement, as a solo run would."""
        R = self.twin.R
        b = p.shape[0] // R
        outs = []
        for r in range(R):
            pr = p[r * b:(r + 1) * b]
            outs.append(self.sample_run(r, pr))
        return torch.cat(outs)

    def sample_run(self, r: int, p: torch.Tensor) -> torch.Tensor:
        meas = self.runs[r]
        if not self.twin.alive[r]:
            return meas._readout(p)
        if meas.seed is None:  # what Measurement.generator does, from the run's "global" RNG
            meas.seed = int(torch.randint(0, 2**62, (1,), generator=self.twin.gens[r]).item())
        try:
            return meas.from_probabilities(p)
        except RuntimeError as exc:  # e.g. NaN probabilities: the solo run stops here
            self.twin.alive[r] = False
            self.twin.errors[r] = exc
            return meas._readout(p.detach())


class PerRunProxy(nn.Module):
    """A module with tensors of its own, run with each run's tensors: vmap over the run
    axis, or a loop over the runs where vmap cannot run the module."""

    def __init__(self, twin: Any, module: nn.Module, stacked: dict[str, torch.Tensor],
                 where: str):
        super().__init__()
        self.twin, self.where = twin, where
        self.base = [module]  # a list: not registered as a submodule (no train/eval walk)
        self.stacked = stacked
        self.mode = "vmap"

    def forward(self, *args: Any) -> Any:
        R = self.twin.R
        rows = next((a.shape[0] for a in args if isinstance(a, torch.Tensor)), None)
        if rows is None or rows % R:
            raise Unsupported(f"{self.where}: no folded batch among the arguments")
        b = rows // R
        split = [isinstance(a, torch.Tensor) and a.dim() > 0 and a.shape[0] == rows
                 for a in args]
        base = self.base[0]
        base.train(self.training)
        if self.mode == "vmap":
            try:
                return self._vmap(base, args, split, b)
            except Exception:  # vmap cannot run it (autograd.Function, in-place op...)
                self.mode = "loop"
        return self._loop(base, args, split, b)

    def _vmap(self, base: nn.Module, args: tuple, split: list[bool], b: int) -> Any:
        R = self.twin.R
        unfolded = [a.reshape(R, b, *a.shape[1:]) if s else a
                    for a, s in zip(args, split, strict=True)]

        def call(tensors: dict[str, torch.Tensor], *xs: Any) -> Any:
            return functional_call(base, tensors, xs)

        dims = (0, *[0 if s else None for s in split])
        out = vmap(call, in_dims=dims)(self.stacked, *unfolded)
        return _fold(out, R * b)

    def _loop(self, base: nn.Module, args: tuple, split: list[bool], b: int) -> Any:
        outs = []
        for r in range(self.twin.R):
            tensors = {n: t[r] for n, t in self.stacked.items()}
            xs = tuple(a[r * b:(r + 1) * b] if s else a
                       for a, s in zip(args, split, strict=True))
            outs.append(functional_call(base, tensors, xs))
        return _cat(outs)


def _fold(out: Any, rows: int) -> Any:
    if isinstance(out, torch.Tensor):
        return out.reshape(rows, *out.shape[2:])
    if isinstance(out, tuple | list):
        return type(out)(_fold(o, rows) for o in out)
    raise Unsupported(f"module output of type {type(out).__name__}")


def _cat(outs: list[Any]) -> Any:
    if isinstance(outs[0], torch.Tensor):
        return torch.cat(outs)
    if isinstance(outs[0], tuple | list):
        return type(outs[0])(_cat(list(o)) for o in zip(*outs, strict=True))
    raise Unsupported(f"module output of type {type(outs[0]).__name__}")


def fold(x: torch.Tensor) -> torch.Tensor:
    """``(R, B, ...)`` -> ``(R*B, ...)``."""
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])
