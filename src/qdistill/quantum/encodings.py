"""Data encodings: batch-first features ``(B, F)`` -> states ``(B, 2, ..., 2)``.

Every encoding prepares its state in closed form (no gate-by-gate simulation):

- :class:`AmplitudeEncoding`: ``|psi> = sum_i x_i |i> / ||x||`` on ``n`` qubits, ``F <= 2**n``.
- :class:`AngleEncoding`: one feature per qubit, ``R_a(x_k)|0>`` on wire ``k`` (``a`` in
  x, y, z; ``qml.AngleEmbedding``); the product state is a Kronecker product.
- :class:`DenseEncoding` ("qubit" or dense angle encoding): two features per qubit,
  ``RZ(x_{2k+1}) RY(x_{2k}) |0>`` on wire ``k``, i.e. RY first, then RZ.

Angle and dense encodings can also act on an existing state (:meth:`Encoding.apply`),
which data re-uploading needs (:class:`~qdistill.quantum.layer.ReUploading`).

``dtype`` is the complex dtype of the state (complex64 default; ``None`` follows the
input: float64 -> complex128). The state is created on the input's device.
"""

from __future__ import annotations

import torch
from torch import nn

from .gates import Op, gate_matrix, rx_matrix, ry_matrix, rz_matrix
from .measure import z_signs
from .memory import check_statevector_memory
from .state import apply_diagonal, apply_single_qubit_layer, product_state, real_dtype

__all__ = ["AmplitudeEncoding", "AngleEncoding", "DenseEncoding", "Encoding",
           "refuse_zero_norm"]


class Encoding(nn.Module):
    """Base class: ``forward(x) -> state``; ``apply(state, x)``; ``ops(x_row)``."""

    n_qubits: int
    n_features: int

    def __init__(self, n_qubits: int, dtype: torch.dtype | None = torch.complex64) -> None:
        super().__init__()
        if n_qubits < 1:
            raise ValueError(f"n_qubits must be >= 1, got {n_qubits}")
        self.n_qubits = int(n_qubits)
        self.dtype = dtype

    def _prepare(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.dtype]:
        """Check the shape, pad features with zeros to ``n_features``, cast."""
        if x.dim() != 2:
            raise ValueError(f"{type(self).__name__} expects (batch, features), got "
                             f"{tuple(x.shape)}")
        if x.shape[1] > self.n_features:
            raise ValueError(f"{type(self).__name__} on {self.n_qubits} qubits takes at most "
                             f"{self.n_features} features, got {x.shape[1]}")
        cdt = self.dtype or (torch.complex128 if x.dtype == torch.float64 else torch.complex64)
        if not x.is_complex():
            x = x.to(real_dtype(cdt))
        if x.shape[1] < self.n_features:
            x = nn.functional.pad(x, (0, self.n_features - x.shape[1]))
        return x, cdt

    def apply(self, state: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Apply the encoding's gates to an existing state (for re-uploading)."""
        raise NotImplementedError(f"{type(self).__name__} cannot act on an existing state")

    def ops(self, x: torch.Tensor) -> list[Op]:
        """Gates encoding one sample ``x`` of shape ``(F,)``, with concrete angles."""
        raise NotImplementedError(f"{type(self).__name__} has no gate list")

    def extra_repr(self) -> str:
        return f"n_qubits={self.n_qubits}, dtype={self.dtype}"


def refuse_zero_norm(norm: torch.Tensor) -> None:
    """Raise if a sample's feature norm ``(B,)`` is 0 (it defines no quantum state).

    On the CPU only: testing a CUDA tensor's values makes the host wait for the GPU
    (a sync every batch, which is what the training loop is written to avoid). There
    a zero-norm sample becomes NaN amplitudes instead, and the NaN checks of ``fit``
    (training loss, once per epoch) and ``evaluate`` stop the run with an error.
    """
    if norm.device.type != "cpu":
        return
    zero = (norm == 0).nonzero().flatten()
    if zero.numel():
        raise ValueError(
            f"AmplitudeEncoding: sample(s) {zero.tolist()[:10]} of the batch have zero "
            "norm, so they define no quantum state; add a small offset to the features "
            "or drop those samples."
        )


class AmplitudeEncoding(Encoding):
    """``x -> x / ||x||`` as the amplitudes of ``n`` qubits (``F <= 2**n``).

    Fewer than ``2**n`` features are padded with zeros *at the end*: basis states
    ``|F>, ..., |2**n - 1>`` get amplitude 0. More than ``2**n`` is an error, and so is
    a sample whose norm is 0 (there is no state to prepare; the error names the
    samples). The normalisation is differentiable, so a trainable reduction in front
    (the paper's FC 784 -> 2**Q) gets gradients. Prepares a state from ``|0...0>``
    only: it cannot be re-uploaded. :meth:`ops` gives a gate list for real features
    (Mottonen state preparation with RY and CNOT only).
    """

    def __init__(self, n_qubits: int, dtype: torch.dtype | None = torch.complex64) -> None:
        super().__init__(n_qubits, dtype)
        self.n_features = 2**self.n_qubits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cdt = self.dtype or (torch.complex128 if x.dtype == torch.float64 else torch.complex64)
        check_statevector_memory(self.n_qubits, x.shape[0] if x.dim() else 1, cdt, x.device)
        x, cdt = self._prepare(x)
        norm = torch.linalg.vector_norm(x, dim=1, keepdim=True)
        refuse_zero_norm(norm[:, 0])
        return (x / norm).to(cdt).view(x.shape[0], *([2] * self.n_qubits))

    def ops(self, x: torch.Tensor) -> list[Op]:
        """RY/CNOT circuit preparing the encoded state of one real sample ``x (F,)``.

        Mottonen et al. (2004) for real amplitudes: wire ``k`` gets an RY rotation
        uniformly controlled by wires ``0..k-1``, with angle
        ``2 atan2(||right subtree||, ||left subtree||)`` (signed amplitudes at the last
        wire, which is how negative amplitudes come out). Each uniformly controlled RY
        with ``k`` controls becomes ``2**k`` RY and ``2**k`` CNOTs (Gray-code order), so
        the circuit has about ``2**(n+1)`` gates. Exact (no global phase).
        """
        if x.is_complex():
            raise NotImplementedError("gate lists exist for real amplitudes only")
        a = self._prepare(x.detach().reshape(1, -1).cpu().double())[0][0]
        norm = torch.linalg.vector_norm(a)
        if norm == 0:
            raise ValueError("AmplitudeEncoding: zero-norm sample has no state")
        a = a / norm
        n = self.n_qubits
        out: list[Op] = []
        for k in range(n):
            tree = a.view(2**k, 2, 2 ** (n - k - 1))
            if k < n - 1:
                left, right = (torch.linalg.vector_norm(tree[:, b], dim=-1) for b in (0, 1))
            else:
                left, right = tree[:, 0, 0], tree[:, 1, 0]
            out += _uniformly_controlled_ry(2 * torch.atan2(right, left), k)
        return out


def _uniformly_controlled_ry(alpha: torch.Tensor, target: int) -> list[Op]:
    """RY(alpha[p]) on ``target`` when wires ``0..target-1`` read ``p`` (wire 0 = MSB).

    Decomposed as ``RY(t_0) CX RY(t_1) CX ...`` with the CX controls following a Gray
    code; ``alpha = M t`` with ``M[p, j] = (-1)^popcount(p & gray(j))``, so
    ``t = M^T alpha / 2**k`` (Mottonen et al. 2004, eq. 3-5).
    """
    k = target
    if k == 0:
        return [Op("ry", (target,), float(alpha[0]))]
    m, changed = gray_walsh(k)
    theta = (m.to(alpha.dtype).T @ alpha) / 2**k
    out: list[Op] = []
    for j, bit in enumerate(changed):
        out += [Op("ry", (target,), float(theta[j])), Op("cx", (k - 1 - bit, target))]
    return out


def gray_walsh(k: int) -> tuple[torch.Tensor, list[int]]:
    """``M[p, j] = (-1)^popcount(p & gray(j))`` (float64) and, for each step ``j``, the
    bit of the Gray code that flips after it (the CX control of the Mottonen circuit)."""
    size = 2**k
    idx = torch.arange(size)
    gray = idx ^ (idx >> 1)
    dots = idx[:, None] & gray[None, :]
    parity = torch.zeros_like(dots)
    for b in range(k):
        parity ^= (dots >> b) & 1
    changed = [int(gray[j] ^ gray[(j + 1) % size]).bit_length() - 1 for j in range(size)]
    return (1 - 2 * parity).double(), changed


_FIRST_COLUMN = {"x": rx_matrix, "y": ry_matrix, "z": rz_matrix}


class AngleEncoding(Encoding):
    """Feature ``x_k`` -> ``R_a(x_k)`` on wire ``k`` (``a = rotation`` in x, y, z).

    ``R_a(t)|0>`` is ``[cos(t/2), -i sin(t/2)]`` (x), ``[cos(t/2), sin(t/2)]`` (y),
    ``[e^{-it/2}, 0]`` (z: only a phase, as in ``qml.AngleEmbedding(rotation="Z")``).
    With ``hadamard=True`` every wire gets H first, ``R_a(x_k) H |0>``: this is the
    paper's v1 student (H then RY(theta_k); P(bit k = 1) = (1 + sin theta_k) / 2) and
    makes z rotations observable. Fewer than ``n`` features leave the remaining wires
    at angle 0 (``|0>``, or ``|+>`` with ``hadamard``).
    """

    def __init__(self, n_qubits: int, rotation: str = "x",
                 dtype: torch.dtype | None = torch.complex64, hadamard: bool = False) -> None:
        super().__init__(n_qubits, dtype)
        rotation = rotation.lower()
        if rotation not in _FIRST_COLUMN:
            raise ValueError(f"rotation must be 'x', 'y' or 'z', got {rotation!r}")
        self.rotation = rotation
        self.hadamard = bool(hadamard)
        self.n_features = self.n_qubits

    def _matrices(self, x: torch.Tensor, cdt: torch.dtype) -> torch.Tensor:
        mats = _FIRST_COLUMN[self.rotation](x).to(cdt)  # (B, n, 2, 2)
        if self.hadamard:
            mats = mats @ gate_matrix("h", like=mats)
        return mats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, cdt = self._prepare(x)
        return product_state(self._matrices(x, cdt)[..., :, 0])

    def apply(self, state: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        x, _ = self._prepare(x)
        if self.rotation == "z" and not self.hadamard:
            # All RZ's at once: phase exp(-i/2 sum_k x_k z_k(i)) of basis state i.
            x = x.to(real_dtype(state.dtype))
            angle = -0.5 * (x @ z_signs(self.n_qubits, x.device, x.dtype).T)
            return apply_diagonal(state, torch.complex(torch.cos(angle), torch.sin(angle)))
        return apply_single_qubit_layer(state, self._matrices(x, state.dtype))

    def ops(self, x: torch.Tensor) -> list[Op]:
        vals = self._prepare(x.reshape(1, -1))[0][0].tolist()
        out = [Op("h", (k,)) for k in range(self.n_qubits)] if self.hadamard else []
        return out + [Op("r" + self.rotation, (k,), v) for k, v in enumerate(vals)]

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rotation={self.rotation!r}, hadamard={self.hadamard}"


class DenseEncoding(Encoding):
    """Two features per qubit: wire ``k`` gets ``RY(x_{2k})`` then ``RZ(x_{2k+1})``.

    ``RZ(b) RY(a)|0> = [e^{-ib/2} cos(a/2), e^{ib/2} sin(a/2)]``: the pair sets both the
    polar and the azimuthal angle of the qubit's Bloch vector, so ``n`` qubits carry
    ``2n`` features (v2's "qubit encoding" ablation). Fewer features are padded with 0.
    """

    def __init__(self, n_qubits: int, dtype: torch.dtype | None = torch.complex64) -> None:
        super().__init__(n_qubits, dtype)
        self.n_features = 2 * self.n_qubits

    def _matrices(self, x: torch.Tensor, cdt: torch.dtype) -> torch.Tensor:
        a, b = x[:, 0::2], x[:, 1::2]
        return (rz_matrix(b).to(cdt) @ ry_matrix(a).to(cdt))  # (B, n, 2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, cdt = self._prepare(x)
        a, b = x[:, 0::2], x[:, 1::2]
        c, s = torch.cos(a / 2), torch.sin(a / 2)
        cb, sb = torch.cos(b / 2), torch.sin(b / 2)
        vec = torch.complex(torch.stack([c * cb, s * cb], -1), torch.stack([-c * sb, s * sb], -1))
        return product_state(vec.to(cdt))

    def apply(self, state: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        x, _ = self._prepare(x)
        return apply_single_qubit_layer(state, self._matrices(x, state.dtype))

    def ops(self, x: torch.Tensor) -> list[Op]:
        vals = self._prepare(x.reshape(1, -1))[0][0].tolist()
        out = []
        for k in range(self.n_qubits):
            out += [Op("ry", (k,), vals[2 * k]), Op("rz", (k,), vals[2 * k + 1])]
        return out
