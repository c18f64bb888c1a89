"""Quantum layers: features ``(B, F)`` -> measurement ``(B, out)``, as ordinary modules.

:class:`QuantumLayer` chains an encoding, an optional ansatz and a measurement;
:class:`ReUploading` interleaves re-encoding with ansatz layers and can stand in for
the encoding. :func:`build_quantum_layer` builds either from names (for configs).

Example (v2 student, 8 qubits, amplitude encoding, <Z> of every qubit)::

    layer = build_quantum_layer(8, encoding="amplitude", ansatz="paper_v2")
    z = layer(features)             # (B, 256) -> (B, 8)
    ops = layer.ops(features[0])    # [Op(name, wires, angle)]: encoding + ansatz gates
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .ansatz import Ansatz, HardwareEfficient, PaperV2Block, StronglyEntangling
from .encodings import AmplitudeEncoding, AngleEncoding, DenseEncoding, Encoding
from .gates import Op
from .measure import ExpvalZ, Measurement, Probs
from .qcnn import QCNN
from .state import flat

__all__ = ["QuantumLayer", "ReUploading", "build_quantum_layer"]

# fuse="auto" composes the ansatz into one 2**n x 2**n matrix only up to this dimension.
FUSE_MAX_DIM = 64


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

    def state(self, x: torch.Tensor) -> torch.Tensor:
        """The state before measurement, ``(B, 2, ..., 2)``."""
        state = self.encoding(x)
        if self.ansatz is None:
            return state
        if self._fuse(state.shape[0]):
            u = self.ansatz.unitary(state.dtype, state.device)
            return (flat(state) @ u.T).view(state.shape)
        return self.ansatz(state)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.measurement(self.state(x))

    def ops(self, x: torch.Tensor) -> list[Op]:
        """Gates for one sample ``x (F,)``: encoding then ansatz (no measurement)."""
        out = list(self.encoding.ops(x))
        return out + (self.ansatz.ops() if self.ansatz is not None else [])


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
