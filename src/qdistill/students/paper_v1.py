"""The paper's v1 student (arXiv:2311.13810 v1): a CNN front end gives n angles, the
circuit is H then RY(theta_k) on every qubit, class j is basis state |j>.

    qdistill distill --student paper-v1 --qubits 3 --dataset fashion-mnist --classes 0-5
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..errors import QdistillError, unknown_name
from ..quantum.gates import Op, ry_matrix
from ..quantum.layer import Gate, trace_gates
from ..quantum.measure import Probs
from ..quantum.precision import full_precision
from ..quantum.state import product_state
from .base import IMAGE_TEXT, LOGPROB_FLOOR, Student, basis_readout, check_qubits

V1_HEADS = ("logprob", "paper")
# paper-v1 front-end output range -> the factor in theta = factor * tanh(.)
V1_ANGLES = {"pi": math.pi, "half-pi": math.pi / 2}
_ANGLE_TEXT = {"pi": "pi", "half-pi": "pi/2"}


class V1FrontEnd(nn.Module):
    """The paper's classical front end: Conv(C->10,k5) MaxPool2 ReLU, Conv(10->20,k5)
    Dropout2d MaxPool2 ReLU, FC ->50 ReLU, Dropout, FC 50->n; output pi * tanh(.)
    (angles in (-pi, pi)). 21,483 parameters at 1x28x28 with n = 3.

    ``angles="half-pi"`` (not the paper's) outputs pi/2 * tanh(.) instead. Why: a
    qubit's P(1) = (1 + sin theta) / 2 rises only up to theta = pi/2 and falls again
    beyond it; at theta = +-pi (tanh saturated) every bit is 50/50, the basis states
    are uniform and the gradient through tanh is gone. Distillation drove paper-v1
    students into exactly that state (MNIST runs at chance in the committed grid; the
    angles of every image reach |theta| = pi within ~300 steps). On (-pi/2, pi/2) P(1)
    is monotonic, and saturation means a confident bit, not a uniform one.
    """

    def __init__(self, image_shape: tuple[int, int, int], n_out: int, angles: str = "pi"):
        super().__init__()
        if angles not in V1_ANGLES:
            raise unknown_name("paper-v1 angle range", angles, V1_ANGLES)
        self.angles, self.angle_scale = angles, V1_ANGLES[angles]
        c, h, w = image_shape
        hs = [((s - 4) // 2 - 4) // 2 for s in (h, w)]
        if min(hs) < 1:
            raise QdistillError(f"the paper-v1 front end needs images of at least 16x16, "
                                f"got {h}x{w}")
        self.net = nn.Sequential(
            nn.Conv2d(c, 10, 5), nn.MaxPool2d(2), nn.ReLU(),
            nn.Conv2d(10, 20, 5), nn.Dropout2d(), nn.MaxPool2d(2), nn.ReLU(),
            nn.Flatten(), nn.Linear(20 * hs[0] * hs[1], 50), nn.ReLU(), nn.Dropout(),
            nn.Linear(50, n_out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.angle_scale * torch.tanh(self.net(x))


class V1Circuit(nn.Module):
    """H then RY(theta_k) on every qubit k, measured in the computational basis.

    No trainable parameter and no entanglement (as in the paper), so the state is the
    product of ``RY(theta_k) H |0>`` and is built in closed form; exactly, the bits are
    independent with ``P(bit k = 1) = (1 + sin theta_k) / 2``. With ``shots`` the
    probabilities are sampled frequencies with a straight-through gradient (see
    ``quantum.measure``).
    """

    def __init__(self, qubits: int, shots: int | None = None):
        super().__init__()
        self.n_qubits = qubits
        self.measurement = Probs(shots=shots)
        self.noise = None  # a quantum.noise.NoisySimulator (set_noise): run gates() under it

    def gates(self, theta: torch.Tensor) -> list[Gate]:
        """:meth:`ops` for every row of ``theta (B, n)`` at once, angles differentiable."""
        return trace_gates(self, lambda m, row: m.ops(row), theta)

    @full_precision  # float32 angles, complex64 states, also under torch.autocast
    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        if self.noise is not None:
            return self.noise.run(self.gates(theta), self.n_qubits, self.measurement,
                                  batch=theta.shape[0], device=theta.device)
        dtype = torch.complex64 if theta.dtype != torch.float64 else torch.complex128
        plus = torch.full((2,), 1 / math.sqrt(2), dtype=dtype, device=theta.device)  # H|0>
        vectors = ry_matrix(theta) @ plus  # (B, n, 2)
        return self.measurement(product_state(vectors))

    def ops(self, theta_row: torch.Tensor) -> list[Op]:
        """The gates of one sample, ``theta_row (n,)``: H then RY(theta_k) on every qubit k.

        ``forward`` builds the same state in closed form; this list is what an export
        (e.g. OpenQASM 3) needs to run the circuit elsewhere.
        """
        theta = [float(t) for t in theta_row.detach().reshape(-1).cpu().tolist()]
        if len(theta) != self.n_qubits:
            raise ValueError(f"V1Circuit on {self.n_qubits} qubits takes {self.n_qubits} angles, "
                             f"got {len(theta)}")
        return ([Op("h", (k,)) for k in range(self.n_qubits)]
                + [Op("ry", (k,), t) for k, t in enumerate(theta)])


class PaperV1Student(Student):
    """The paper's v1 student: CNN front end -> n angles -> V1Circuit -> 2^n
    basis-state probabilities; class j is basis state ``|j>`` (j < K).

    Heads (``head``):
    - ``logprob`` (default): logits_j = log(p_j + 0.01) for the K class states (the
      floor keeps gradients bounded; see ``LOGPROB_FLOOR``). Cross-entropy is then close to
      -log P(measured |y> | a class state was measured); the argmax is the paper's
      argmax over basis states restricted to the class states.
    - ``paper``: the notebooks' head, exactly: the outputs are
      ``cat(sigmoid(p), 1 - sigmoid(p))`` (2^(n+1) entries) and cross-entropy runs over
      all of them; the class logits (prediction, KD) are the first K entries,
      ``class_outputs``. (An earlier variant with cross-entropy over the K class
      entries only collapsed to chance in 15 of 36 grid runs; this one did not.)
    """

    def __init__(self, num_classes: int, image_shape: tuple[int, int, int], qubits: int = 3,
                 shots: int | None = None, head: str = "logprob", angles: str = "pi"):
        super().__init__()
        check_qubits(qubits, num_classes, "paper-v1 student")
        if head not in V1_HEADS:
            raise unknown_name("paper-v1 head", head, V1_HEADS)
        self.num_classes, self.head = num_classes, head
        self.image_shape = tuple(image_shape)
        self.class_outputs = list(range(num_classes))  # basis states |0>..|K-1>
        self.front = V1FrontEnd(image_shape, qubits, angles)
        self.circuit = V1Circuit(qubits, shots)

    def circuit_input(self, x: torch.Tensor) -> torch.Tensor:
        """The circuit's angles theta (B, n)."""
        return self.front(x)

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """All 2^n basis-state probabilities (B, 2^n)."""
        return self.circuit(self.circuit_input(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_from_circuit(self.probabilities(x))

    def logits_from_circuit(self, p: torch.Tensor) -> torch.Tensor:
        """The head: all 2^n basis-state probabilities (B, 2^n) -> ``forward``'s output."""
        if self.head == "paper":
            sp = torch.sigmoid(p)
            return torch.cat([sp, 1 - sp], dim=1)  # (B, 2^(n+1)); classes: first K
        return torch.log(p[:, :len(self.class_outputs)] + LOGPROB_FLOOR)  # |0>..|K-1>: a slice

    def export_info(self) -> dict[str, Any]:
        return {
            "preprocessing": {
                "description": "paper-v1 CNN front end (Conv 5x5 -> MaxPool -> ReLU, Conv "
                               "5x5 -> MaxPool -> ReLU, FC 50 -> ReLU, FC n) -> angles "
                               f"theta = {_ANGLE_TEXT[self.front.angles]} * tanh(.)",
                "image": IMAGE_TEXT,
                "circuit_input": "angles theta_k: H then RY(theta_k) on qubit k",
            },
            "readout": basis_readout(list(range(self.circuit.n_qubits)),
                                     self.class_outputs, self.head),
        }
