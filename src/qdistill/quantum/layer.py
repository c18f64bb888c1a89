"""Quantum layers: features ``(B, F)`` -> measurement ``(B, out)``, as ordinary modules.

:class:`QuantumLayer` chains an encoding, an optional ansatz and a measurement;
:class:`ReUploading` interleaves re-encoding with ansatz layers and can stand in for
the encoding. :func:`build_quantum_layer` builds either from names (for configs).

Example (v2 student, 8 qubits, amplitude encoding, <Z> of every qubit)::

    layer = build_quantum_layer(8, encoding="amplitude", ansatz="paper_v2")
    z = layer(features)             # (B, 256) -> (B, 8)
    ops = layer.ops(features[0])    # [Op(name, wires, angle)]: encoding + ansatz gates
    gates = layer.gates(features)   # the same gates for the whole batch, angles as tensors

A noisy simulator (:mod:`~qdistill.quantum.noise`) attached as ``layer.noise`` runs
``layer.gates(x)`` instead of the fused statevector path; see :func:`trace_gates`.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.func import functional_call

from .ansatz import Ansatz, HardwareEfficient, PaperV2Block, StronglyEntangling
from .encodings import (
    AmplitudeEncoding,
    AngleEncoding,
    DenseEncoding,
    Encoding,
    gray_walsh,
    refuse_zero_norm,
)
from .gates import Op
from .measure import ExpvalZ, Measurement, Probs
from .precision import full_precision
from .qcnn import QCNN
from .state import flat

__all__ = ["Gate", "QuantumLayer", "ReUploading", "amplitude_gates", "build_quantum_layer",
           "trace_gates"]

# fuse="auto" composes the ansatz into one 2**n x 2**n matrix only up to this dimension.
FUSE_MAX_DIM = 64


class Gate(NamedTuple):
    """One gate of a batched gate list: the gate of ``ops(x[i])`` for every row ``i`` at once.

    ``params`` holds one entry per angle: a 0-d tensor (shared by the batch, e.g. a trained
    weight), a ``(B,)`` tensor (one angle per sample, e.g. an encoded feature) or a float
    (a constant). Tensors keep their autograd history, so simulating the list is
    differentiable in the weights and in the features.
    """

    name: str  # a simulator gate name (see gates.GATES); an Op's "u" becomes "u3"
    wires: tuple[int, ...]
    params: tuple[torch.Tensor | float, ...] = ()


# Tracing codes: ops() is run with every feature and parameter replaced by base + index.
# Integers below 2**24 are exact in float32, so a copied angle reads back its index.
_TRACE_BASES = (2.0**20, 2.0**21)
_TEMPLATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class _OpsCall(nn.Module):
    def __init__(self, module: nn.Module, call: Callable[[Any, torch.Tensor], list[Op]]):
        super().__init__()
        self.inner, self.call = module, call

    def forward(self, row: torch.Tensor) -> list[Op]:
        return self.call(self.inner, row)


def _template(module: nn.Module, call: Callable, n_features: int, dtype: torch.dtype
              ) -> list[tuple[str, tuple[int, ...], tuple[tuple[str, Any], ...]]]:
    named = list(module.named_parameters())
    total = n_features + sum(p.numel() for _, p in named)
    if total >= _TRACE_BASES[0]:
        raise ValueError(f"cannot trace a circuit with {total} features + parameters")
    traces = []
    for base in _TRACE_BASES:
        codes = base + torch.arange(total, dtype=torch.float64)
        params, k = {}, n_features
        for name, p in named:
            params["inner." + name] = codes[k:k + p.numel()].view(p.shape).to(p.dtype)
            k += p.numel()
        with torch.no_grad():
            traces.append(functional_call(_OpsCall(module, call), params,
                                          (codes[:n_features].to(dtype),)))
    template = []
    for i, (a, b) in enumerate(zip(*traces, strict=True)):
        if (a.name, tuple(a.wires)) != (b.name, tuple(b.wires)):
            raise ValueError(f"{type(module).__name__}.ops() is not a fixed gate list")
        angles = [() if op.angle is None else op.angle if isinstance(op.angle, tuple)
                  else (op.angle,) for op in (a, b)]
        sources = []
        for va, vb in zip(*angles, strict=True):
            idx = va - _TRACE_BASES[0]
            if va == vb:
                sources.append(("const", float(va)))
            elif idx == vb - _TRACE_BASES[1] and idx.is_integer() and 0 <= idx < total:
                j = int(idx)
                sources.append(("x", j) if j < n_features else ("p", j - n_features))
            else:
                raise ValueError(f"gate {i} ({a.name}) of {type(module).__name__}.ops(): its "
                                 "angle is not a copy of one feature or parameter, so it "
                                 "cannot be traced")
        template.append(({"u": "u3"}.get(a.name, a.name), tuple(a.wires), tuple(sources)))
    return template


def trace_gates(module: nn.Module, call: Callable[[Any, torch.Tensor], list[Op]],
                features: torch.Tensor, key: str = "ops") -> list[Gate]:
    """The gate list ``call(module, row)`` (e.g. ``module.ops(row)``) for every row of
    ``features (B, F)`` at once, with differentiable angles.

    ``ops()`` lists concrete floats; this finds where each one comes from by running it
    twice with every feature and parameter replaced by a distinct code (the module is
    not modified: ``torch.func.functional_call``). Each angle must be a constant or a
    verbatim copy of one feature (becomes ``features[:, j]``) or one parameter entry
    (becomes that entry of the live parameter); anything else is refused. The
    structure is cached per module, ``key`` and feature width.
    """
    cache = _TEMPLATES.setdefault(module, {})
    ck = (key, features.shape[1], features.dtype)
    if ck not in cache:
        code_dtype = features.dtype if features.is_floating_point() else torch.float32
        cache[ck] = _template(module, call, features.shape[1], code_dtype)
    params = [p.reshape(-1) for p in module.parameters()]
    flat = torch.cat(params) if params else None
    out = []
    for name, wires, sources in cache[ck]:
        vals = tuple(features[:, i] if kind == "x" else flat[i] if kind == "p" else i
                     for kind, i in sources)
        out.append(Gate(name, wires, vals))
    return out


def _safe_norm(v: torch.Tensor) -> torch.Tensor:
    """``||v||`` over the last axis, with gradient 0 (not NaN) at 0."""
    s = v.square().sum(-1)
    pos = s > 0
    return torch.where(pos, torch.sqrt(torch.where(pos, s, torch.ones_like(s))), 0.0)


def _safe_atan2(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    zero = (x == 0) & (y == 0)
    return torch.where(zero, 0.0, torch.atan2(y, torch.where(zero, torch.ones_like(x), x)))


def amplitude_gates(features: torch.Tensor, n_qubits: int) -> list[Gate]:
    """Batched :meth:`AmplitudeEncoding.ops`: the Mottonen RY/CX circuit preparing
    ``x / ||x||`` for every row of real ``features (B, 2**n)``, angles differentiable."""
    batch = features.shape[0]
    norm = _safe_norm(features)
    refuse_zero_norm(norm)
    a = features / norm[:, None]
    out: list[Gate] = []
    for k in range(n_qubits):
        tree = a.view(batch, 2**k, 2, 2 ** (n_qubits - k - 1))
        if k < n_qubits - 1:
            left, right = _safe_norm(tree[:, :, 0]), _safe_norm(tree[:, :, 1])
        else:
            left, right = tree[:, :, 0, 0], tree[:, :, 1, 0]
        alpha = 2 * _safe_atan2(right, left)  # (B, 2**k)
        if k == 0:
            out.append(Gate("ry", (0,), (alpha[:, 0],)))
            continue
        m, changed = gray_walsh(k)
        theta = alpha @ m.to(alpha.dtype) / 2**k
        for j, bit in enumerate(changed):
            out += [Gate("ry", (k,), (theta[:, j],)), Gate("cx", (k - 1 - bit, k))]
    return out


class ReUploading(nn.Module):
    """Data re-uploading: ``x -> W_L S(x) ... W_2 S(x) W_1 S(x) |0>``.

    ``S`` is the encoding (prepared in closed form the first time, applied as gates the
    following times; amplitude encoding cannot be re-applied), ``W_l`` the ansatz layers.
    Maps features to a state, so it can replace the encoding of a :class:`QuantumLayer`.
    """

    def __init__(self, encoding: Encoding, layers: Sequence[Ansatz]) -> None:
        super().__init__()
        if len(layers) > 1 and isinstance(encoding, AmplitudeEncoding):
            raise ValueError("amplitude encoding prepares a state from |0...0>; it cannot be "
                             "re-uploaded. Use angle or dense encoding.")
        for layer in layers:
            if layer.n_qubits != encoding.n_qubits:
                raise ValueError("all layers must act on the encoding's qubits")
        self.encoding = encoding
        self.layers = nn.ModuleList(layers)
        self.n_qubits = encoding.n_qubits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state = self.encoding(x)
        for i, layer in enumerate(self.layers):
            if i:
                state = self.encoding.apply(state, x)
            state = layer(state)
        return state

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def ops(self, x: torch.Tensor) -> list[Op]:
        enc = self.encoding.ops(x)
        out: list[Op] = []
        for layer in self.layers:
            out += enc + layer.ops()
        return out


class QuantumLayer(nn.Module):
    """``x (B, F) -> measurement(ansatz(encoding(x)))``.

    Args:
        encoding: an :class:`Encoding` or a :class:`ReUploading` (anything mapping
            features to a state and having ``n_qubits``).
        ansatz: an :class:`Ansatz` or ``None``.
        measurement: default :class:`ExpvalZ` on all wires.
        fuse: compose the ansatz into its ``2**n x 2**n`` unitary once per forward
            (by running it on the identity, a batch of ``2**n`` basis states) and apply
            that with one GEMM. Only pays off when ``2**n`` is small next to the batch
            and the ansatz is deep. Measured (1 thread, 4-layer hardware-efficient, ms
            gate path / fused): batch 128: 1.68 / 1.69 at 4 qubits, 2.9 / 3.0 at 6;
            batch 1024: 3.1 / 2.7 at 4 qubits, 8.9 / 7.1 at 6. ``"auto"`` fuses when
            ``2**n <= 64`` and ``batch >= 16 * 2**n``; the default is ``False``.
    """

    def __init__(self, encoding: nn.Module, ansatz: Ansatz | None = None,
                 measurement: Measurement | None = None, fuse: bool | str = False) -> None:
        super().__init__()
        if fuse not in (True, False, "auto"):
            raise ValueError(f"fuse must be True, False or 'auto', got {fuse!r}")
        self.encoding = encoding
        self.ansatz = ansatz
        self.measurement = measurement if measurement is not None else ExpvalZ()
        self.n_qubits = int(encoding.n_qubits)
        if ansatz is not None and ansatz.n_qubits != self.n_qubits:
            raise ValueError(f"ansatz acts on {ansatz.n_qubits} qubits, encoding on "
                             f"{self.n_qubits}")
        self.fuse = fuse
        # A noisy simulator (quantum.noise.NoisySimulator, set by quantum.noise.set_noise):
        # forward then runs gates(x) under its noise model. Not state: never saved.
        self.noise: Any = None

    @property
    def output_size(self) -> int:
        """Width of the output (number of wires for <Z>, ``2**k`` for probabilities)."""
        return self.measurement.output_size(self.n_qubits)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _fuse(self, batch: int) -> bool:
        if self.fuse == "auto":
            dim = 2**self.n_qubits
            return dim <= FUSE_MAX_DIM and batch >= 16 * dim
        return bool(self.fuse)

    @full_precision
    def state(self, x: torch.Tensor) -> torch.Tensor:
        """The state before measurement, ``(B, 2, ..., 2)``."""
        state = self.encoding(x)
        if self.ansatz is None:
            return state
        if self._fuse(state.shape[0]):
            u = self.ansatz.unitary(state.dtype, state.device)
            return (flat(state) @ u.T).view(state.shape)
        return self.ansatz(state)

    @full_precision  # float32 angles, complex64 states, also under torch.autocast
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.noise is not None:
            return self.noise.run(self.gates(x), self.n_qubits, self.measurement,
                                  batch=x.shape[0], device=x.device)
        return self.measurement(self.state(x))

    def ops(self, x: torch.Tensor) -> list[Op]:
        """Gates for one sample ``x (F,)``: encoding then ansatz (no measurement)."""
        out = list(self.encoding.ops(x))
        return out + (self.ansatz.ops() if self.ansatz is not None else [])

    def gates(self, x: torch.Tensor) -> list[Gate]:
        """The gates of ``ops(x[i])`` for every row of ``x (B, F)`` at once, angles as
        tensors (differentiable in the weights and in ``x``); see :func:`trace_gates`."""
        enc = self.encoding.encoding if isinstance(self.encoding, ReUploading) else self.encoding
        feats, _ = enc._prepare(x)  # checked, padded, cast like the encoding does
        if isinstance(enc, AmplitudeEncoding):  # angles are not copies of the features
            if feats.is_complex():
                raise NotImplementedError("gate lists exist for real amplitudes only")
            tail = [] if self.ansatz is None else trace_gates(
                self.ansatz, lambda m, _row: m.ops(), feats[:, :0], key="ansatz")
            return amplitude_gates(feats, self.n_qubits) + tail
        return trace_gates(self, lambda m, row: m.ops(row), feats)


_ENCODINGS = {"amplitude": AmplitudeEncoding, "angle": AngleEncoding, "dense": DenseEncoding,
              "qubit": DenseEncoding}
_ANSATZE = ("paper_v2", "hardware_efficient", "strongly_entangling", "qcnn", "none")


def build_quantum_layer(
    n_qubits: int,
    encoding: str = "amplitude",
    ansatz: str = "paper_v2",
    n_layers: int = 1,
    measurement: str = "expval",
    shots: int | None = None,
    seed: int | None = None,
    rotation: str = "y",
    hadamard: bool = False,
    entangler: str = "ring",
    reupload: bool = False,
    dtype: torch.dtype = torch.complex64,
    fuse: bool | str = False,
) -> QuantumLayer:
    """A :class:`QuantumLayer` from names.

    Args:
        encoding: ``amplitude`` | ``angle`` (axis ``rotation``, H first if ``hadamard``)
            | ``dense`` (alias ``qubit``). The paper's v1 student is ``angle``, ``y``,
            ``hadamard=True``, ansatz ``none``, ``probs`` with shots.
        ansatz: ``paper_v2`` | ``hardware_efficient`` (``entangler`` ring/line) |
            ``strongly_entangling`` | ``qcnn`` | ``none``.
        n_layers: ansatz layers (for ``qcnn``: number of readout wires).
        measurement: ``expval`` (<Z> per wire; for qcnn only the readout wires) |
            ``probs`` (basis-state probabilities of the same wires).
        shots: ``None`` for exact values, else sampled with a straight-through gradient.
        reupload: re-encode the input before every ansatz layer (not for amplitude).
        dtype: complex dtype of the state (complex64, or complex128 for checks).
        fuse: see :class:`QuantumLayer`.
    """
    if encoding not in _ENCODINGS:
        raise ValueError(f"encoding must be one of {sorted(_ENCODINGS)}, got {encoding!r}")
    if ansatz not in _ANSATZE:
        raise ValueError(f"ansatz must be one of {_ANSATZE}, got {ansatz!r}")
    if measurement not in ("expval", "probs"):
        raise ValueError(f"measurement must be 'expval' or 'probs', got {measurement!r}")
    kwargs = {"rotation": rotation, "hadamard": hadamard} if encoding == "angle" else {}
    enc = _ENCODINGS[encoding](n_qubits, dtype=dtype, **kwargs)

    def make(layers: int) -> Ansatz | None:
        if ansatz == "paper_v2":
            return PaperV2Block(n_qubits, layers)
        if ansatz == "hardware_efficient":
            return HardwareEfficient(n_qubits, layers, entangler=entangler)
        if ansatz == "strongly_entangling":
            return StronglyEntangling(n_qubits, layers)
        if ansatz == "qcnn":
            return QCNN(n_qubits, n_readout=n_layers)
        return None

    wires = None
    if reupload and ansatz not in ("none", "qcnn"):
        encoder: nn.Module = ReUploading(enc, [make(1) for _ in range(n_layers)])
        body = None
    else:
        encoder, body = enc, make(n_layers)
        if isinstance(body, QCNN):
            wires = body.readout_wires
    meas_cls = ExpvalZ if measurement == "expval" else Probs
    return QuantumLayer(encoder, body, meas_cls(wires, shots=shots, seed=seed), fuse=fuse)
