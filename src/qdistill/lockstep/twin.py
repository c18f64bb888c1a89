"""A student's run-batched twin: R students of one architecture as one module.

The twin is a copy of the first run's student whose *parameterised leaves* are
replaced by proxies holding the R runs' parameters stacked along a leading run axis;
the student's own ``forward`` (and ``circuit_input`` / ``circuit`` /
``logits_from_circuit``) then runs unchanged on a *folded* batch ``(R*B, ...)``, run
r's B samples at rows ``r*B .. r*B+B-1``. Everything without parameters (pooling,
activations, encodings, the simulator, heads) is per-sample code and runs on the folded
batch as it is.

Proxies (``Twin`` picks them while walking the module tree):

- ``nn.Linear``: one batched GEMM per call (``baddbmm`` over runs); weights stored
  transposed, ``(R, in, out)``, so their gradients come out contiguous.
- ``nn.Conv2d``: one grouped convolution with ``groups=R`` (runs as channel groups);
  a layer whose input needs no gradient (the first) as batched GEMMs over each run's
  patches; big per-run batches (evaluation) one convolution per run.
- ``nn.MaxPool2d`` (windows that do not overlap): without gradients, an elementwise
  maximum of shifted views (same values, much faster than the pooling kernel).
- an ``nn.Sequential`` of Conv2d, MaxPool2d, ReLU, Dropout, Flatten and Linear (the
  paper-v1 front end): the proxies above, run where it can (CPU, float32) by the native
  kernel (:mod:`.native`: the whole chain's forward and backward for all runs in one C
  call each, the dropout noise drawn as the Dropout proxy draws it).
- ``nn.Dropout`` / ``nn.Dropout2d``: each run's noise drawn exactly as PyTorch's CPU
  kernel draws it in a solo run (``empty(shape).bernoulli_(1 - p)`` then
  ``div_(1 - p)``, shape ``(B, C, 1, 1)`` for Dropout2d), from the run's own
  ``torch.Generator`` standing in for the global RNG of the solo run: same masks.
- ``Measurement`` with shots: exact probabilities of the measured wires for the folded
  batch, then each run sampled with its own student's measurement (its own seeded
  generator, the seed drawn from the run's generator on first use as in a solo run),
  with the solo run's shapes: same counts.
- any other module with parameters or buffers of its own (an ansatz, a PCA reduction):
  ``torch.func.vmap`` of ``functional_call`` over the run axis, or, where vmap cannot
  run it (custom autograd Functions, in-place ops), a loop over the runs.
- a 0-d parameter of the student itself (the fully quantum student's ``scale``): one
  value per sample, ``(R*B, 1)``.

``Unsupported`` is raised for what this cannot represent (a student without the
``Student`` parts, tied parameters, other dropout kinds, batch norm, noise, any other
draw from the global RNG: :meth:`Twin.check_random_streams`); the caller then trains
those runs solo. After building, :meth:`Twin.self_check` compares the twin's outputs
with every run's own student on a few images.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from ..quantum.measure import Measurement
from . import native
from .proxies import (
    DROPOUTS,
    OTHER_RANDOM,
    Conv2dProxy,
    DropoutProxy,
    LinearProxy,
    MaxPoolProxy,
    MeasurementProxy,
    PerRunProxy,
    Unsupported,
)


def _tensors(module: nn.Module, recurse: bool) -> list[tuple[str, torch.Tensor]]:
    return (list(module.named_parameters(recurse=recurse))
            + list(module.named_buffers(recurse=recurse)))


def _random_inside(module: nn.Module) -> bool:
    return any(isinstance(m, DROPOUTS + OTHER_RANDOM)
               or (isinstance(m, Measurement) and m.shots is not None)
               for m in module.modules())


class Twin:
    """R students (same class and configuration) run as one module; see the module doc.

    ``models``: the runs' students (their weights are read once, here); ``generators``:
    one per run, standing in for the solo run's global torch RNG (dropout, the first
    draw of a measurement seed).
    """

    def __init__(self, models: Sequence[nn.Module], generators: Sequence[torch.Generator]):
        self.R = len(models)
        if self.R == 0 or len(generators) != self.R:
            raise ValueError("one generator per model")
        self.gens = list(generators)
        self.alive = [True] * self.R  # False: that run failed; its rows are ignored
        self.errors: dict[int, BaseException] = {}  # run -> error raised in its sampling
        self.models = list(models)
        first = models[0]
        for m in models[1:]:
            if type(m) is not type(first) or _shapes(m) != _shapes(first):
                raise Unsupported("the students differ in architecture")
        for part in ("circuit_input", "logits_from_circuit", "circuit"):
            if not hasattr(first, part):
                raise Unsupported(f"{type(first).__name__} has no {part}")
        if len(list(first.named_parameters(remove_duplicate=False))) != len(
                list(first.named_parameters())):
            raise Unsupported("tied parameters")
        self.template = copy.deepcopy(first)
        # state-dict name -> stacked leaf (R, ...); "t": stored transposed (Linear)
        self.params: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.layout: dict[str, str] = {}
        self.measurements: list[MeasurementProxy] = []
        self.capture = False  # measurements return exact probabilities (see loop.py)
        self._root_scalars: list[tuple[str, torch.Tensor]] = []
        self._convert(self.template, "")
        for name, p in list(self.template.named_parameters(recurse=False)):
            if p.dim() != 0:
                raise Unsupported(f"parameter {name!r} of the student itself is not a scalar")
            t = self._stack(name, "")
            del self.template._parameters[name]
            self._root_scalars.append((name, t))
        if list(self.template.named_buffers(recurse=False)):
            raise Unsupported("buffers on the student itself")
        names = [n for n, p in first.named_parameters()]
        missing = [n for n in names if n not in self.params]
        if missing:
            raise Unsupported(f"parameters not covered: {missing}")
        self.params = OrderedDict((n, self.params[n]) for n in names)  # model order

    # ----------------------------------------------------------------- building
    def _stack(self, name: str, layout: str) -> torch.Tensor:
        with torch.no_grad():
            parts = []
            for m in self.models:
                t = _get(m, name).detach()
                parts.append(t.transpose(-1, -2) if layout == "t" else t)
            stacked = torch.stack(parts).contiguous()
        p = dict(self.models[0].named_parameters()).get(name)
        if p is not None:
            stacked.requires_grad_(p.requires_grad)
            self.params[name] = stacked
            self.layout[name] = layout
        return stacked

    def _convert(self, module: nn.Module, prefix: str) -> None:
        for name, child in list(module.named_children()):
            full = f"{prefix}{name}"
            proxy = self._proxy(child, full)
            if proxy is not None:
                module._modules[name] = proxy
            elif _tensors(child, recurse=True) or _random_inside(child):
                self._convert(child, full + ".")

    def _proxy(self, child: nn.Module, full: str) -> nn.Module | None:
        pre = full + "."
        if isinstance(child, OTHER_RANDOM):
            raise Unsupported(f"{type(child).__name__} at {full}")
        if isinstance(child, nn.modules.batchnorm._NormBase):
            raise Unsupported(f"{type(child).__name__} at {full} (statistics updated in "
                              "training)")
        if isinstance(child, DROPOUTS):
            if child.inplace:
                raise Unsupported(f"in-place dropout at {full}")
            return DropoutProxy(self, child.p, isinstance(child, nn.Dropout2d))
        if isinstance(child, Measurement):
            if _tensors(child, recurse=True):
                raise Unsupported(f"a measurement with parameters at {full}")
            proxy = MeasurementProxy(self, child, [_get_module(m, full) for m in self.models])
            self.measurements.append(proxy)
            return proxy
        if getattr(child, "noise", None) is not None:
            raise Unsupported(f"noisy circuit at {full}")
        if type(child) is nn.Linear:
            w = self._stack(pre + "weight", "t")
            b = self._stack(pre + "bias", "") if child.bias is not None else None
            return LinearProxy(self, w, b)
        if type(child) is nn.Conv2d and child.padding_mode == "zeros" and child.groups == 1:
            w = self._stack(pre + "weight", "")
            b = self._stack(pre + "bias", "") if child.bias is not None else None
            return Conv2dProxy(self, child, w, b)
        if type(child) is nn.MaxPool2d:
            return MaxPoolProxy(child)
        lib = native.library() if native.supported(child) else None
        if lib is not None:
            self._convert(child, pre)  # the per-layer proxies: the fallback, and the stacks
            return native.NativeSequential(child, lib)
        if _tensors(child, recurse=False):
            if _random_inside(child):
                raise Unsupported(f"random layers inside {type(child).__name__} at {full}")
            stacked = {n: self._stack(pre + n, "") for n, _ in _tensors(child, recurse=True)}
            return PerRunProxy(self, child, stacked, full)
        return None

    # ----------------------------------------------------------------- running
    def _set_batch(self, rows: int) -> None:
        b = rows // self.R
        for name, t in self._root_scalars:
            self.template.__dict__[name] = t.repeat_interleave(b).unsqueeze(1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The students' outputs for a folded batch ``x (R*B, ...)``: ``(R*B, M)``."""
        self._set_batch(x.shape[0])
        return self.template(x)

    def circuit_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """``circuit(circuit_input(x))`` (with ``capture`` set: exact probabilities)."""
        self._set_batch(x.shape[0])
        return self.template.circuit(self.template.circuit_input(x))

    def logits_from_circuit(self, out: torch.Tensor) -> torch.Tensor:
        self._set_batch(out.shape[0])
        return self.template.logits_from_circuit(out)

    def train(self, mode: bool = True) -> None:
        self.template.train(mode)

    def eval(self) -> None:
        self.template.train(False)

    def run_state(self, r: int) -> dict[str, torch.Tensor]:
        """Run r's parameters, in its own student's layout (views where possible)."""
        return {n: (t[r].transpose(-1, -2) if self.layout[n] == "t" else t[r])
                for n, t in self.params.items()}

    def to_run_layout(self, name: str, t: torch.Tensor) -> torch.Tensor:
        """``t`` (one run's tensor in the stacked layout of ``name``) in the student's."""
        return t.transpose(-1, -2) if self.layout[name] == "t" else t

    def from_run_layout(self, name: str, t: torch.Tensor) -> torch.Tensor:
        return t.transpose(-1, -2) if self.layout[name] == "t" else t

    @torch.no_grad()
    def check_random_streams(self, x: torch.Tensor) -> None:
        """Raise ``Unsupported`` if a training-mode forward of the twin on ``x`` (folded)
        draws from torch's global RNG: something random besides the dropout layers and
        the measurements' shots, which a solo run would draw from its own global RNG.
        Nothing is consumed: the runs' generators and the global RNG are restored."""
        states = [g.get_state() for g in self.gens]
        before = torch.get_rng_state()
        was = self.template.training
        for p in self.measurements:
            p.exact = True  # no shot sampling
        try:
            self.train()
            self(x)
            drew = not torch.equal(before, torch.get_rng_state())
        finally:
            for p in self.measurements:
                p.exact = False
            self.train(was)
            torch.set_rng_state(before)
            for g, st in zip(self.gens, states, strict=True):
                g.set_state(st)
        if drew:
            raise Unsupported("the student draws from the global torch RNG outside its "
                              "dropout layers")

    @torch.no_grad()
    def self_check(self, images: Sequence[torch.Tensor], atol: float = 1e-4) -> None:
        """Raise ``Unsupported`` unless the twin gives every run's own outputs (eval
        mode, exact measurements) on ``images[r]`` (a few float images per run)."""
        shots = [(m, m.shots) for s in self.models for m in s.modules()
                 if isinstance(m, Measurement)]
        modes = [s.training for s in self.models]
        was, self.capture = self.template.training, False
        try:
            for m, _ in shots:
                m.shots = None
            for p in self.measurements:
                p.exact = True
            self.eval()
            for s in self.models:
                s.eval()
            x = torch.cat(list(images))
            got = self(x).view(self.R, len(images[0]), -1)
            for r, s in enumerate(self.models):
                want = s(images[r])
                if want.shape != got[r].shape or not torch.allclose(
                        got[r], want, atol=atol, rtol=1e-4, equal_nan=True):
                    raise Unsupported(f"the run-batched {type(s).__name__} does not give "
                                      "the run's own outputs")
        finally:
            for m, n in shots:
                m.shots = n
            for p in self.measurements:
                p.exact = False
            self.train(was)
            for s, mode in zip(self.models, modes, strict=True):
                s.train(mode)


def _shapes(m: nn.Module) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    return [(n, tuple(t.shape), t.dtype) for n, t in m.state_dict().items()]


def _get(module: nn.Module, name: str) -> torch.Tensor:
    owner, _, attr = name.rpartition(".")
    return getattr(module.get_submodule(owner) if owner else module, attr)


def _get_module(module: nn.Module, name: str) -> nn.Module:
    return module.get_submodule(name)
