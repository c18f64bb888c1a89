"""Fast batched statevector simulator in PyTorch (autograd, CPU and CUDA, batch-first).

States are complex tensors ``(B, 2, ..., 2)``; wire 0 is the most significant bit of
the basis index (PennyLane's order). Building blocks:

- ``state``: :func:`zero_state`, :func:`product_state`, :func:`apply_matrix`,
  :func:`apply_single_qubit_layer` (fused), :func:`apply_permutation`, :func:`apply_diagonal`.
- ``gates``: matrices and the functional API (``rx(state, theta, wire)`` ...), :class:`Op`.
- ``encodings``: :class:`AmplitudeEncoding`, :class:`AngleEncoding`, :class:`DenseEncoding`.
- ``ansatz`` / ``qcnn``: :class:`PaperV2Block`, :class:`HardwareEfficient`,
  :class:`StronglyEntangling`, :class:`QCNN`, :class:`Circuit`.
- ``measure``: :class:`ExpvalZ`, :class:`Probs` (exact or shots), :func:`parameter_shift`.
- ``layer``: :class:`QuantumLayer`, :class:`ReUploading`, :func:`build_quantum_layer`.
- ``memory``: :func:`statevector_bytes`, :func:`check_statevector_memory`.
- ``precision``: :func:`full_precision` (circuits stay float32/complex64 under autocast).
- ``noise``: :class:`NoiseModel` (depolarizing, amplitude damping, readout; presets),
  exact density matrices or seeded trajectories, :func:`set_noise`, :func:`noisy`.
"""

from .ansatz import Ansatz, Circuit, HardwareEfficient, PaperV2Block, StronglyEntangling
from .encodings import AmplitudeEncoding, AngleEncoding, DenseEncoding, Encoding
from .gates import (
    GATES,
    Op,
    apply_gate,
    apply_ops,
    cnot,
    crx,
    cry,
    crz,
    cz,
    gate_matrix,
    h,
    rot,
    rx,
    ry,
    rz,
    swap,
    u3,
    x,
    y,
    z,
)
from .layer import Gate, QuantumLayer, ReUploading, build_quantum_layer
from .measure import (
    ExpvalZ,
    Measurement,
    Probs,
    expval_z,
    parameter_shift,
    probabilities,
    sample_counts,
    sample_frequencies,
)
from .memory import available_memory_bytes, check_statevector_memory, statevector_bytes
from .noise import NoiseModel, NoisySimulator, density_matrix, noisy, set_noise, set_shots
from .qcnn import QCNN
from .state import (
    apply_diagonal,
    apply_matrix,
    apply_permutation,
    apply_single_qubit_layer,
    basis_permutation,
    product_state,
    zero_state,
)

__all__ = [
    "GATES",
    "QCNN",
    "AmplitudeEncoding",
    "Ansatz",
    "AngleEncoding",
    "Circuit",
    "DenseEncoding",
    "Encoding",
    "ExpvalZ",
    "Gate",
    "HardwareEfficient",
    "Measurement",
    "NoiseModel",
    "NoisySimulator",
    "Op",
    "PaperV2Block",
    "Probs",
    "QuantumLayer",
    "ReUploading",
    "StronglyEntangling",
    "apply_diagonal",
    "apply_gate",
    "apply_matrix",
    "apply_ops",
    "apply_permutation",
    "apply_single_qubit_layer",
    "available_memory_bytes",
    "basis_permutation",
    "build_quantum_layer",
    "check_statevector_memory",
    "cnot",
    "crx",
    "cry",
    "crz",
    "cz",
    "density_matrix",
    "expval_z",
    "gate_matrix",
    "h",
    "noisy",
    "parameter_shift",
    "probabilities",
    "product_state",
    "rot",
    "rx",
    "ry",
    "rz",
    "sample_counts",
    "sample_frequencies",
    "set_noise",
    "set_shots",
    "statevector_bytes",
    "swap",
    "u3",
    "x",
    "y",
    "z",
    "zero_state",
]
