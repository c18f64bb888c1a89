"""A native kernel for the run-batched twin's small CNN front ends: an ``nn.Sequential``
of Conv2d, MaxPool2d, ReLU, Dropout/Dropout2d, Flatten and Linear, forward and backward
for all R runs in one C call each (``native.c``), on the CPU in float32.

Why: the paper-v1 front end at batch 1 is about 25 PyTorch kernels and autograd nodes
per step, each a few microseconds of dispatch around a few microseconds of arithmetic
(grouped convolutions, max pools and batched GEMMs were ~3.3 ms of a ~6 ms step at
R = 24). Here each sample of each run passes through every layer while it sits in L1:
the convolutions as im2col and register-tiled matrix products, branch-free max pools,
and a backward that skips the zero gradients max pooling leaves (3 in 4). The whole
lockstep step (Adam, circuit and loss included) is 1.6-1.9x faster at R = 1..72
(``python benchmarks/lockstep.py native``; docs/performance.md).

The library is compiled on first use with the C compiler on PATH (``$CC``, else ``cc``,
``gcc`` or ``clang``; ``-O3 -march=native``, under a second) into
``$QDISTILL_CACHE_DIR/native/``, keyed by the source, the flags and the CPU, then
checked once per process against the per-layer proxies (PyTorch's kernels) on a small
random chain, forward and every gradient. Without a compiler, if the build or the check
fails, or with ``QDISTILL_NATIVE=0``, the twin keeps its per-layer proxies (the same
numbers up to float rounding, slower); a failed build or check is logged as a warning.

Numbers: float rounding differs from PyTorch's kernels (another summation order; about
1e-7 relative per layer), as a grouped convolution's already does from a solo run's, so
a lockstep run is another draw of the experiment either way (docs/performance.md).
Its sums run in an order fixed by the target's vector width (16 floats with AVX-512, 8
with AVX, 4 elsewhere), so, like PyTorch's own kernels, it rounds differently on
different CPUs. Measured on one machine (``-march`` set by hand), forward + backward per
run and batch-1 step of paper-v1's front end: 23 + 29 us with AVX-512, 25 + 26 us with
AVX2, 35 + 43 us with SSE2 only; all three within 1e-6 of PyTorch.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import math
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.core import cache_dir
from .proxies import Conv2dProxy, DropoutProxy, LinearProxy, MaxPoolProxy, _pair

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("native.c")
ENV_SWITCH = "QDISTILL_NATIVE"  # "0": never use the native kernel
# gnu11: vector extensions; fp-contract: fused multiply-adds where the CPU has them;
# no -ffast-math (NaN must propagate through the max pools as in PyTorch)
FLAGS = ["-O3", "-std=gnu11", "-ffp-contract=fast", "-fno-tree-loop-distribute-patterns",
         "-shared", "-fPIC"]
CONV, POOL, RELU, DROPOUT, LINEAR = range(5)


class Layer(ctypes.Structure):
    """``native.c``'s ``Layer``: one step of the chain, its sizes and tensors."""

    _fields_ = ([(n, ctypes.c_int64) for n in (
        "kind", "c", "h", "w", "oc", "oh", "ow", "kh", "kw", "sh", "sw",
        "in_size", "out_size", "act_off", "idx_off", "channelwise")]
        + [(n, ctypes.c_void_p) for n in (
            "weight", "bias", "gweight", "gbias", "noise")])


# ------------------------------------------------------------------ the library
def _cpu_key() -> str:
    """What -march=native depends on: the CPU's model and flags (Linux), else the
    platform's processor string."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return "\n".join(sorted({ln for ln in lines if ln.startswith(("model name", "flags"))}))
    except OSError:
        return f"{platform.machine()} {platform.processor()}"


def _compiler() -> str | None:
    """The C compiler to use: ``$CC``, else the first of cc, gcc, clang on PATH."""
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _compile(cc: str, target: Path) -> None:
    """Build ``native.c`` into ``target`` (atomically: parallel workers may race)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / target.name
        errors = []
        for arch in (["-march=native"], []):  # some compilers lack -march=native
            cmd = [cc, *FLAGS, *arch, str(SOURCE), "-o", str(out), "-lm"]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode == 0:
                os.replace(out, target)
                return
            errors.append(f"{' '.join(cmd)}: {proc.stderr.strip()[-300:]}")
        raise OSError("; ".join(errors))


def library() -> ctypes.CDLL | None:
    """The compiled, checked kernel, or None: switched off (``$QDISTILL_NATIVE=0``, read
    on every call), or it could not be built or failed its check (logged once)."""
    if os.environ.get(ENV_SWITCH, "1") == "0":
        return None
    return _built()


@functools.lru_cache(maxsize=1)
def _built() -> ctypes.CDLL | None:
    """Build (or find in the cache), load and check the kernel, once per process."""
    cc = _compiler()
    if cc is None:
        log.info("native lockstep kernel off: no C compiler on PATH ($CC, cc, gcc, clang)")
        return None
    key = hashlib.sha256(SOURCE.read_bytes() + repr((FLAGS, cc, _cpu_key())).encode())
    target = cache_dir() / "native" / f"lockstep-{key.hexdigest()[:16]}.so"
    try:
        if not target.exists():
            _compile(cc, target)
        lib = ctypes.CDLL(str(target))
    except OSError as exc:
        log.warning(f"native lockstep kernel off: could not build or load it ({exc})")
        return None
    ptr, i64 = ctypes.c_void_p, ctypes.c_int64
    lib.qd_forward.argtypes = [ptr, i64, i64, i64, ptr, ptr, ptr, ptr]
    lib.qd_backward.argtypes = [ptr, i64, i64, i64, ptr, ptr, ptr, ptr, ptr, ptr, i64, ptr, ptr]
    lib.qd_forward.restype = lib.qd_backward.restype = None
    problem = _self_test(lib)
    if problem:
        log.warning(f"native lockstep kernel off: {problem}")
        return None
    return lib


# ------------------------------------------------------------------ the chain
def supported(seq: nn.Module) -> bool:
    """Whether ``seq`` is an ``nn.Sequential`` the kernel runs (every child one of the
    layers it knows, with the options it knows) and has at least one Conv2d or Linear."""
    if type(seq) is not nn.Sequential or len(seq) == 0:
        return False
    for m in seq:
        if type(m) is nn.Conv2d:
            ok = (m.stride == (1, 1) and m.padding == (0, 0) and m.dilation == (1, 1)
                  and m.groups == 1 and m.padding_mode == "zeros")
        elif type(m) is nn.MaxPool2d:
            ok = (_pair(m.padding) == (0, 0) and _pair(m.dilation) == (1, 1)
                  and not m.ceil_mode and not m.return_indices)
        elif type(m) in (nn.Dropout, nn.Dropout2d):
            ok = not m.inplace
        elif type(m) is nn.Flatten:
            ok = m.start_dim == 1 and m.end_dim == -1
        else:
            ok = type(m) in (nn.ReLU, nn.Linear)
        if not ok:
            return False
    return any(type(m) in (nn.Conv2d, nn.Linear) for m in seq)


class Plan:
    """The chain laid out for one per-sample input shape and training mode: the
    ``Layer`` array, where each output lives, the scratch sizes, the stacked tensors in
    the order the autograd Function takes them, each active dropout layer with the
    per-sample shape of its input. :meth:`build` gives None where the layers or shapes
    do not fit the kernel (e.g. a Linear on a 4-d input)."""

    def __init__(self, lib: ctypes.CDLL, layers: list[Layer], dropouts: list[tuple],
                 act_total: int, idx_total: int, cols: int, largest: int,
                 out_shape: tuple[int, ...], params: list[torch.Tensor],
                 slots: list[tuple[int, str]]):
        self.lib, self.n = lib, len(layers)
        self.array = (Layer * self.n)(*layers)
        self.dropouts = dropouts  # (DropoutProxy, per-sample input shape)
        self.dropout_at = [i for i, L in enumerate(layers) if L.kind == DROPOUT]
        self.act_total, self.idx_total, self.out_shape = act_total, idx_total, out_shape
        self.params, self.slots = params, slots  # slots: (layer, "gweight" / "gbias")
        self.R = params[0].shape[0]
        self.last_off, self.last_size = layers[-1].act_off, layers[-1].out_size
        f32 = torch.float32  # explicit: whatever torch's default dtype
        self.scratch = torch.empty(2 * max(cols, 1), dtype=f32)  # patches; two halves
        self.g = torch.empty(2, max(largest, 1), dtype=f32)  # the backward's gradients
        self.free: list[tuple[torch.Tensor, torch.Tensor]] = []  # see take()

    @staticmethod
    def build(lib: ctypes.CDLL, proxies: list[nn.Module], shape: tuple[int, ...]
              ) -> Plan | None:
        layers: list[Layer] = []
        dropouts: list[tuple] = []
        params: list[torch.Tensor] = []
        slots: list[tuple[int, str]] = []
        act = idx = cols = 0
        largest = math.prod(shape)
        for mod in proxies:
            if isinstance(mod, nn.Flatten):
                shape = (math.prod(shape),)
                continue
            if isinstance(mod, DropoutProxy) and not mod.active():
                continue
            if len(shape) not in (1, 3):
                return None
            c, h, w = (*shape, 1, 1)[:3]
            L = Layer(c=c, h=h, w=w, in_size=math.prod(shape))
            if isinstance(mod, Conv2dProxy):
                oc, ci, kh, kw = mod.weight.shape[1:]
                if len(shape) != 3 or ci != c or kh > h or kw > w:
                    return None
                L.kind, L.oc, L.oh, L.ow, L.kh, L.kw = CONV, oc, h - kh + 1, w - kw + 1, kh, kw
                # patches (K, P); the first layer's weight gradient also uses (oc, K)
                cols = max(cols, ci * kh * kw * max(L.oh * L.ow, oc))
                shape, weight = (oc, L.oh, L.ow), mod.weight
            elif isinstance(mod, LinearProxy):
                if len(shape) != 1 or mod.weight_t.shape[1] != c:
                    return None
                L.kind, L.oc = LINEAR, mod.weight_t.shape[2]
                shape, weight = (L.oc,), mod.weight_t
            elif isinstance(mod, MaxPoolProxy):
                (kh, kw), (sh, sw) = _pair(mod.pool.kernel_size), _pair(
                    mod.pool.stride or mod.pool.kernel_size)
                if len(shape) != 3 or kh > h or kw > w:
                    return None
                L.kind, L.kh, L.kw, L.sh, L.sw = POOL, kh, kw, sh, sw
                L.oc, L.oh, L.ow = c, (h - kh) // sh + 1, (w - kw) // sw + 1
                shape = (c, L.oh, L.ow)
            elif isinstance(mod, nn.ReLU):
                L.kind = RELU
            elif isinstance(mod, DropoutProxy):
                if mod.feature and len(shape) != 3:
                    return None
                L.kind, L.channelwise = DROPOUT, int(mod.feature)
                dropouts.append((mod, shape))
            else:
                return None
            L.out_size = math.prod(shape)
            largest = max(largest, L.out_size)
            L.act_off, act = act, act + L.out_size
            if L.kind == POOL:
                L.idx_off, idx = idx, idx + L.out_size
            if L.kind in (CONV, LINEAR):
                for t, slot in ((weight, "gweight"), (mod.bias, "gbias")):
                    if t is None:
                        continue
                    if t.dtype != torch.float32 or not t.is_contiguous() or t.device.type != "cpu":
                        return None
                    params.append(t)
                    slots.append((len(layers), slot))
                    setattr(L, slot[1:], t.data_ptr())  # "weight" / "bias"
            layers.append(L)
        if not params:
            return None
        return Plan(lib, layers, dropouts, act, idx, cols, largest, shape, params, slots)

    def take(self, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Buffers for every layer's output and every pool's argmax over ``rows``:
        reused once a backward has read them (allocating ~1 MB a step put the kernel's
        page clearing at 18 % of the step)."""
        while self.free:
            acts, index = self.free.pop()
            if acts.numel() == self.act_total * rows:
                return acts, index
        return (torch.empty(self.act_total * rows, dtype=torch.float32),
                torch.empty(max(self.idx_total * rows, 1), dtype=torch.int32))

    def give_back(self, acts: torch.Tensor, index: torch.Tensor) -> None:
        self.free.append((acts, index))

    def noises(self, rows: int) -> list[torch.Tensor]:
        """This step's dropout noise, drawn in layer order as the proxies draw it."""
        return [mod.fill_noise(torch.empty(mod.noise_shape(torch.Size((rows, *shape))),
                                           dtype=torch.float32))
                for mod, shape in self.dropouts]

    def point(self, noises: list[torch.Tensor]) -> None:
        """Aim the dropout layers at ``noises`` (one call's)."""
        for i, noise in zip(self.dropout_at, noises, strict=True):
            self.array[i].noise = noise.data_ptr()


class NativeChain(torch.autograd.Function):
    """The chain's forward (every activation kept) and backward in ``native.c``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, plan: Plan, noises: list[torch.Tensor],
                backward: bool, *params: torch.Tensor) -> torch.Tensor:
        rows = x.shape[0]
        x = x.contiguous()
        acts, index = plan.take(rows)
        plan.point(noises)
        plan.lib.qd_forward(plan.array, plan.n, plan.R, rows // plan.R, x.data_ptr(),
                            acts.data_ptr(), index.data_ptr(), plan.scratch.data_ptr())
        start = plan.last_off * rows
        out = acts[start:start + rows * plan.last_size].view(rows, *plan.out_shape).clone()
        ctx.plan, ctx.noises, ctx.released = plan, noises, False
        ctx.save_for_backward(x, acts, index)
        if not backward:
            plan.give_back(acts, index)  # no backward will read them
            ctx.released = True
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:
        if ctx.released:
            raise RuntimeError("the native lockstep chain runs one backward per forward "
                               "(its buffers are reused after it)")
        x, acts, index = ctx.saved_tensors
        plan = ctx.plan
        rows = x.shape[0]
        grads = [torch.empty_like(p) for p in plan.params]
        for (layer, slot), g in zip(plan.slots, grads, strict=True):
            setattr(plan.array[layer], slot, g.data_ptr())
        gx = torch.empty_like(x) if ctx.needs_input_grad[0] else None
        plan.point(ctx.noises)
        grad = grad.contiguous()
        half = plan.scratch.numel() // 2
        try:
            plan.lib.qd_backward(
                plan.array, plan.n, plan.R, rows // plan.R, x.data_ptr(), acts.data_ptr(),
                index.data_ptr(), grad.data_ptr(), gx.data_ptr() if gx is not None else None,
                plan.scratch.data_ptr(), half, plan.g[0].data_ptr(), plan.g[1].data_ptr())
        finally:
            for layer, slot in plan.slots:
                setattr(plan.array[layer], slot, None)
        plan.give_back(acts, index)
        ctx.released = True
        return (gx, None, None, None, *[g if ctx.needs_input_grad[4 + i] else None
                                  for i, g in enumerate(grads)])


class NativeSequential(nn.Module):
    """An ``nn.Sequential`` of the twin's per-layer proxies (``chain``), run by the
    native kernel where it can (CPU, float32, the library built and checked, shapes it
    knows); anywhere else by the proxies themselves."""

    def __init__(self, chain: nn.Sequential, lib: ctypes.CDLL):
        super().__init__()
        self.chain, self.lib = chain, lib
        self._plans: dict[tuple, Plan | None] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plan = self._plan(x)
        if plan is None:
            return self.chain(x)
        backward = torch.is_grad_enabled() and (
            x.requires_grad or any(p.requires_grad for p in plan.params))
        return NativeChain.apply(x, plan, plan.noises(x.shape[0]), backward, *plan.params)

    def _plan(self, x: torch.Tensor) -> Plan | None:
        if x.device.type != "cpu" or x.dtype != torch.float32 or x.shape[0] == 0:
            return None
        key = (tuple(x.shape[1:]), self.training)
        if key not in self._plans:
            self._plans[key] = Plan.build(self.lib, list(self.chain), tuple(x.shape[1:]))
        plan = self._plans[key]
        return plan if plan is not None and x.shape[0] % plan.R == 0 else None


# ------------------------------------------------------------------ the check
def reference_pair(R: int, image: tuple[int, int, int], seed: int = 0
                   ) -> tuple[nn.Sequential, list[torch.Generator]]:
    """A small random paper-v1-like chain of per-layer proxies for R runs (every layer
    kind the kernel knows, with dropout), and the runs' generators: what the check at
    load time and the tests run both ways."""
    from types import SimpleNamespace

    g = torch.Generator().manual_seed(seed)
    twin = SimpleNamespace(R=R, gens=[torch.Generator().manual_seed(seed + r)
                                      for r in range(R)])
    c, h, w = image
    oh, ow = ((h - 2) // 2 - 1) // 2, ((w - 2) // 2 - 1) // 2

    def rand(*shape: int) -> torch.Tensor:
        return (torch.randn(shape, generator=g) * 0.5).requires_grad_(True)

    chain = nn.Sequential(
        Conv2dProxy(twin, nn.Conv2d(c, 3, 3), rand(R, 3, c, 3, 3), rand(R, 3)),
        MaxPoolProxy(nn.MaxPool2d(2)), nn.ReLU(),
        Conv2dProxy(twin, nn.Conv2d(3, 4, 2), rand(R, 4, 3, 2, 2), rand(R, 4)),
        DropoutProxy(twin, 0.5, True), MaxPoolProxy(nn.MaxPool2d(2)), nn.ReLU(),
        nn.Flatten(), LinearProxy(twin, rand(R, 4 * oh * ow, 5), rand(R, 5)), nn.ReLU(),
        DropoutProxy(twin, 0.5, False), LinearProxy(twin, rand(R, 5, 3), None))
    return chain, twin.gens


def compare(lib: ctypes.CDLL, chain: nn.Sequential, gens: list[torch.Generator],
            x: torch.Tensor, x_grad: bool = False) -> dict[str, float]:
    """Largest differences (relative to the largest value) between the kernel and the
    proxies (``chain``) on
    ``x``: the output, the input gradient (``x_grad``) and every parameter gradient,
    for the loss sum(out * fixed random weights); the same dropout masks in both."""
    chain.train()
    native = NativeSequential(chain, lib)
    params = [p for m in chain for p in vars(m).values() if isinstance(p, torch.Tensor)
              and p.requires_grad]
    states = [g.get_state() for g in gens]
    results = []
    for run in (native, chain):
        for g, st in zip(gens, states, strict=True):
            g.set_state(st)
        xi = x.detach().clone().requires_grad_(x_grad)
        out = run(xi)
        weights = torch.linspace(-1, 1, out.numel()).view_as(out)
        grads = torch.autograd.grad((out * weights).sum(), params + ([xi] if x_grad else []))
        results.append((out.detach(), grads))
    (o1, g1), (o2, g2) = results
    pairs = {"output": (o1, o2), **{f"grad {i}": ab for i, ab in
                                    enumerate(zip(g1, g2, strict=True))}}
    return {k: float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))
            for k, (a, b) in pairs.items()}


def _self_test(lib: ctypes.CDLL) -> str | None:
    """None if the kernel gives the proxies' outputs and gradients on a small random
    chain (3 runs, 2 samples each, 1x12x12); else what differs."""
    chain, gens = reference_pair(3, (1, 12, 12))
    x = torch.rand(6, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    try:
        diff = compare(lib, chain, gens, x, x_grad=True)
    except Exception as exc:  # noqa: BLE001 - any failure means: do not use it
        return f"its check raised {exc!r}"
    bad = {k: v for k, v in diff.items() if not v <= 1e-4}
    return f"its check differs from PyTorch: {bad}" if bad else None
