"""Quantum students: classical images in, class logits ``(B, K)`` out.

    student = build_student(StudentConfig(name="paper-v1", qubits=3), num_classes=6,
                            image_shape=(1, 28, 28))
    logits = student(images)          # (B, 6); float images in [0, 1]

Conventions every student follows:
- ``forward`` returns logits whose columns ``class_outputs`` are the K class logits.
  Almost every student returns exactly ``(B, K)``; the paper-v1 ``paper`` head returns
  the notebooks' 2^(n+1) entries, cross-entropy runs over all of them, and prediction
  and KD use ``class_logits(model, outputs)``: the mapping is declared, never guessed.
- Trainable parameters of the quantum circuit live under the ``quantum`` sub-module;
  everything else is classical. :func:`parameter_split` counts them that way.
- Basis state ``|j>`` reads wire 0 as its most significant bit (PennyLane's order).
- ``forward(x) == logits_from_circuit(circuit(circuit_input(x)))``: ``circuit_input`` is
  the classical part before the circuit, ``logits_from_circuit`` the classical head after
  it, so the circuit can run elsewhere (``qdistill.export_sdk``) and the head still be
  the student's own. ``image_shape`` is the ``(C, H, W)`` a student takes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .config import StudentConfig
from .errors import ConfigError, QdistillError, unknown_name
from .quantum.gates import Op, ry_matrix
from .quantum.layer import Gate, build_quantum_layer, trace_gates
from .quantum.measure import Probs
from .quantum.memory import check_statevector_memory
from .quantum.noise import NoisySimulator, set_noise
from .quantum.precision import full_precision
from .quantum.state import product_state

V1_HEADS = ("logprob", "paper")
# paper-v1 front-end output range -> the factor in theta = factor * tanh(.)
V1_ANGLES = {"pi": math.pi, "half-pi": math.pi / 2}
# Probability floor of the logprob head: logits = log(p + 0.01). Without it,
# d log p / d theta is unbounded as a class state's p -> 0, and batch-1 training blew up:
# MNIST 0-5, 3 qubits, 3 epochs, test acc with floor 1e-10 / 1e-3 / 1e-2: no teacher
# 0.89 0.91 0.77 / 0.86 0.88 0.93 / 0.84 0.89 0.95; LeNet KD 0.13 0.16 0.17 (collapsed)
# / 0.75 0.92 0.93 / 0.85 0.90 0.93.
_EPS = 1e-2


def parameter_split(model: nn.Module) -> dict[str, int]:
    """{"classical": n, "quantum": m}: parameters under ``model.quantum`` are quantum."""
    out = {"classical": 0, "quantum": 0}
    for name, p in model.named_parameters():
        out["quantum" if name.startswith("quantum.") else "classical"] += p.numel()
    return out


def _check_qubits(qubits: int, num_classes: int, what: str) -> None:
    need = max(1, math.ceil(math.log2(num_classes)))
    if qubits < need:
        raise QdistillError(
            f"{what}: {qubits} qubits give {2 ** qubits} basis states, fewer than the "
            f"{num_classes} classes; use at least {need} qubits")


def _check_memory(qubits: int) -> None:
    """Refuse, before allocating, a circuit whose statevector cannot fit in memory."""
    try:
        check_statevector_memory(qubits, 1)
    except ValueError as exc:
        raise QdistillError(str(exc)) from None


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
        self.qubits = qubits
        self.measure = Probs(shots=shots)
        self.noise = None  # a quantum.noise.NoisySimulator (set_noise): run gates() under it

    def gates(self, theta: torch.Tensor) -> list[Gate]:
        """:meth:`ops` for every row of ``theta (B, n)`` at once, angles differentiable."""
        return trace_gates(self, lambda m, row: m.ops(row), theta)

    @full_precision  # float32 angles, complex64 states, also under torch.autocast
    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        if self.noise is not None:
            return self.noise.run(self.gates(theta), self.qubits, self.measure,
                                  batch=theta.shape[0], device=theta.device)
        dtype = torch.complex64 if theta.dtype != torch.float64 else torch.complex128
        plus = torch.full((2,), 1 / math.sqrt(2), dtype=dtype, device=theta.device)  # H|0>
        vectors = ry_matrix(theta) @ plus  # (B, n, 2)
        return self.measure(product_state(vectors))

    def ops(self, theta_row: torch.Tensor) -> list[Op]:
        """The gates of one sample, ``theta_row (n,)``: H then RY(theta_k) on every qubit k.

        ``forward`` builds the same state in closed form; this list is what an export
        (e.g. OpenQASM 3) needs to run the circuit elsewhere.
        """
        theta = [float(t) for t in theta_row.detach().reshape(-1).cpu().tolist()]
        if len(theta) != self.qubits:
            raise ValueError(f"V1Circuit on {self.qubits} qubits takes {self.qubits} angles, "
                             f"got {len(theta)}")
        return ([Op("h", (k,)) for k in range(self.qubits)]
                + [Op("ry", (k,), t) for k, t in enumerate(theta)])


class PaperV1Student(nn.Module):
    """The paper's v1 student: CNN front end -> n angles -> V1Circuit -> 2^n
    basis-state probabilities; class j is basis state ``|j>`` (j < K).

    Heads (``head``):
    - ``logprob`` (default): logits_j = log(p_j + 0.01) for the K class states (the
      floor keeps gradients bounded; see ``_EPS``). Cross-entropy is then close to
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
        _check_qubits(qubits, num_classes, "paper-v1 student")
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
        return torch.log(p[:, :len(self.class_outputs)] + _EPS)  # |0>..|K-1>: a slice


REDUCTIONS = ("fc", "crop", "pca", "avgpool", "maxpool")
ENCODINGS = ("amplitude", "angle", "dense")
# Our short names -> the simulator's ansatz names.
ANSATZE = {"hea": "hardware_efficient", "strong": "strongly_entangling", "qcnn": "qcnn",
           "paper-v2": "paper_v2"}
READOUTS = ("probs", "z")


def n_features(encoding: str, qubits: int) -> int:
    """Features an encoding takes: 2^Q (amplitude), Q (angle), 2Q (dense)."""
    return {"amplitude": 2 ** qubits, "angle": qubits, "dense": 2 * qubits}[encoding]


class Reduction(nn.Module):
    """Image (B, C, H, W) -> (B, F) features.

    - ``fc``: trainable Linear(C*H*W -> F) (classical parameters; the paper's best).
    - ``crop``: the centre s x s pixels, s = ceil(sqrt(F)), first F in row order.
    - ``pca``: the top-F principal components, fitted on the training split only
      (``fit``); buffers, so they travel with ``state_dict``.
    - ``avgpool`` / ``maxpool``: adaptive pooling to s x s, first F values.
    Fixed reductions average colour channels first. Fixed features get +1e-6 so an
    all-black region still defines an amplitude-encoded state.
    """

    def __init__(self, kind: str, image_shape: tuple[int, int, int], features: int):
        super().__init__()
        if kind not in REDUCTIONS:
            raise unknown_name("reduction", kind, REDUCTIONS)
        c, h, w = image_shape
        self.kind, self.features = kind, features
        self.side = math.ceil(math.sqrt(features))
        if kind in ("crop", "avgpool", "maxpool") and self.side > min(h, w):
            raise QdistillError(f"{kind} reduction: {features} features need a "
                                f"{self.side}x{self.side} region, images are {h}x{w}")
        if kind == "fc":
            self.fc = nn.Linear(c * h * w, features)
        if kind == "pca":
            if features > c * h * w:
                raise QdistillError(f"pca reduction: {features} components > {c * h * w} "
                                    "pixels")
            self.register_buffer("mean", torch.zeros(c * h * w))
            self.register_buffer("components", torch.zeros(features, c * h * w))
            self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
            # A host-side copy of `fitted`: reading the buffer in forward would sync
            # with the GPU every batch. Kept in step by fit() and load_state_dict().
            self._fitted = False
            self.register_load_state_dict_post_hook(Reduction._sync_fitted)

    @staticmethod
    def _sync_fitted(module: nn.Module, incompatible_keys: Any) -> None:
        module._fitted = bool(module.fitted)

    @torch.no_grad()
    def fit(self, images: torch.Tensor) -> None:
        """PCA on the training images (float, (N, C, H, W)); other kinds: nothing."""
        if self.kind != "pca":
            return
        x = images.flatten(1).double()
        mean = x.mean(0)
        # Top right-singular vectors of the centred data = principal axes.
        _, _, vh = torch.linalg.svd(x - mean, full_matrices=False)
        self.mean.copy_(mean.float())
        self.components.copy_(vh[: self.features].float())
        self.fitted.fill_(True)
        self._fitted = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "fc":
            return self.fc(x.flatten(1))
        if self.kind == "pca":
            if not self._fitted:
                raise QdistillError("pca reduction used before fit(train_images)")
            return (x.flatten(1) - self.mean) @ self.components.T
        g = x.mean(1, keepdim=True)  # grey
        s = self.side
        if self.kind == "crop":
            h, w = g.shape[-2:]
            top, left = (h - s) // 2, (w - s) // 2
            g = g[..., top:top + s, left:left + s]
        elif self.kind == "avgpool":
            g = nn.functional.adaptive_avg_pool2d(g, s)
        else:
            g = nn.functional.adaptive_max_pool2d(g, s)
        return g.flatten(1)[:, : self.features] + 1e-6


class PaperV2Student(nn.Module):
    """The paper's v2 student: reduction -> encoding -> the v2 rotation block -> <Z> of
    every qubit -> Linear(Q -> K) -> logits. Q = 4 or 8 in the paper (any Q that fits).
    Angle/dense encodings of fixed (pixel-valued) features use angles pi * x."""

    def __init__(self, num_classes: int, image_shape: tuple[int, int, int], qubits: int = 8,
                 reduction: str = "fc", encoding: str = "amplitude",
                 shots: int | None = None):
        super().__init__()
        if encoding not in ENCODINGS:
            raise unknown_name("encoding", encoding, ENCODINGS)
        _check_memory(qubits)
        self.image_shape = tuple(image_shape)
        self.scale = math.pi if encoding != "amplitude" and reduction != "fc" else 1.0
        self.reduce = Reduction(reduction, image_shape, n_features(encoding, qubits))
        self.quantum = build_quantum_layer(qubits, encoding=encoding, ansatz="paper_v2",
                                           measurement="expval", shots=shots)
        self.head = nn.Linear(qubits, num_classes)

    def fit_preprocessing(self, images: torch.Tensor) -> None:
        self.reduce.fit(images)

    def circuit_input(self, x: torch.Tensor) -> torch.Tensor:
        """The features the encoding takes (B, F)."""
        return self.scale * self.reduce(x)

    def logits_from_circuit(self, z: torch.Tensor) -> torch.Tensor:
        """The head: <Z> of every qubit (B, Q) -> logits (B, K)."""
        return self.head(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_from_circuit(self.quantum(self.circuit_input(x)))


class QuantumStudent(nn.Module):
    """A fully quantum student: a fixed reduction (crop/pca/avgpool/maxpool, nothing
    trainable) -> encoding -> L layers of an entangling ansatz -> class scores.

    Every trainable parameter is in the circuit except one scalar: ``readout="probs"``
    gives logits log(p_j + 0.01) of basis states |0>..|K-1> (needs 2^Q >= K; nothing
    classical is trained); ``readout="z"`` gives logits ``scale * <Z_j>`` of the first K
    qubits (needs Q >= K), with ``scale`` the one trainable classical parameter (<Z> is in
    [-1, 1], too flat for softmax without it).
    """

    def __init__(self, num_classes: int, image_shape: tuple[int, int, int], qubits: int = 8,
                 reduction: str = "avgpool", encoding: str = "amplitude", ansatz: str = "hea",
                 layers: int = 4, readout: str = "probs", shots: int | None = None):
        super().__init__()
        if reduction == "fc":
            raise QdistillError("the fully quantum student takes a fixed reduction "
                                "(crop, pca, avgpool, maxpool); fc is trainable")
        for kind, name, valid in (("encoding", encoding, ENCODINGS), ("ansatz", ansatz, ANSATZE),
                                  ("readout", readout, READOUTS)):
            if name not in valid:
                raise unknown_name(kind, name, valid)
        if readout == "probs":
            _check_qubits(qubits, num_classes, "quantum student (probs readout)")
        elif qubits < num_classes:
            raise QdistillError(f"quantum student (z readout): {num_classes} classes need "
                                f"at least {num_classes} qubits, got {qubits}")
        _check_memory(qubits)
        self.readout, self.num_classes = readout, num_classes
        self.image_shape = tuple(image_shape)
        self.scale_in = math.pi if encoding != "amplitude" else 1.0
        self.reduce = Reduction(reduction, image_shape, n_features(encoding, qubits))
        # QCNN: pool down to the wires read out (log2 K for probs, K for z).
        n_read = (max(1, math.ceil(math.log2(num_classes))) if readout == "probs"
                  else num_classes)
        self.quantum = build_quantum_layer(
            qubits, encoding=encoding, ansatz=ANSATZE[ansatz],
            n_layers=n_read if ansatz == "qcnn" else layers,
            measurement="probs" if readout == "probs" else "expval", shots=shots)
        self.class_outputs = list(range(num_classes))
        if readout == "z":
            self.scale = nn.Parameter(torch.tensor(5.0))

    def fit_preprocessing(self, images: torch.Tensor) -> None:
        self.reduce.fit(images)

    def circuit_input(self, x: torch.Tensor) -> torch.Tensor:
        """The features the encoding takes (B, F)."""
        return self.scale_in * self.reduce(x)

    def logits_from_circuit(self, out: torch.Tensor) -> torch.Tensor:
        """The head: the circuit's output (probabilities of the readout wires, or their
        <Z>) -> logits (B, K)."""
        out = out[:, :len(self.class_outputs)]  # classes 0..K-1: a slice, no index copy
        if self.readout == "probs":
            return torch.log(out + _EPS)
        return self.scale * out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_from_circuit(self.quantum(self.circuit_input(x)))


def _paper_v1(cfg: StudentConfig, k: int, shape: tuple[int, int, int]) -> nn.Module:
    return PaperV1Student(k, shape, cfg.qubits, cfg.shots, cfg.head, cfg.angles)


def _paper_v2(cfg: StudentConfig, k: int, shape: tuple[int, int, int]) -> nn.Module:
    return PaperV2Student(k, shape, cfg.qubits, cfg.reduction, cfg.encoding, cfg.shots)


def _quantum(cfg: StudentConfig, k: int, shape: tuple[int, int, int]) -> nn.Module:
    return QuantumStudent(k, shape, cfg.qubits, cfg.reduction, cfg.encoding, cfg.ansatz,
                          cfg.layers, cfg.readout, cfg.shots)


@dataclass(frozen=True)
class StudentKind:
    """One kind of student: how to build it, the options of its own (with defaults), and
    whether its circuit must have trainable parameters (paper-v1's has none, as in the
    paper; a fully quantum student with none would train nothing)."""

    build: Callable[[StudentConfig, int, tuple[int, int, int]], nn.Module]
    options: dict[str, Any]
    trainable_circuit: bool


# Options every student takes: name, qubits, shots, noise (+ its method/trajectories).
STUDENTS: dict[str, StudentKind] = {
    "paper-v1": StudentKind(_paper_v1, {"head": "logprob", "angles": "pi"}, False),
    "paper-v2": StudentKind(_paper_v2, {"reduction": "fc", "encoding": "amplitude"}, True),
    "quantum": StudentKind(_quantum, {"reduction": "avgpool", "encoding": "amplitude",
                                      "ansatz": "hea", "layers": 4, "readout": "probs"}, True),
}
_KIND_OPTIONS = ("head", "angles", "reduction", "encoding", "ansatz", "layers", "readout")
_NOISE_DEFAULTS = {"noise_method": "density", "noise_trajectories": 32}


def resolve_student(cfg: StudentConfig, strict: bool = True) -> StudentConfig:
    """``cfg`` with the student's own defaults filled in, and the options of other
    students (and the noise options without noise) left None: what runs, as recorded.

    ``strict``: an option given to a student that does not take it is an error naming
    both. ``strict=False`` drops such options instead (checkpoints written before
    options were checked recorded every option; a fully quantum student recorded with
    reduction ``fc`` ran with ``avgpool``).
    """
    if cfg.name not in STUDENTS:
        raise unknown_name("student", cfg.name, STUDENTS)
    kind = STUDENTS[cfg.name]
    values = {o: getattr(cfg, o) for o in _KIND_OPTIONS}
    if not strict and cfg.name == "quantum" and values["reduction"] == "fc":
        values["reduction"] = "avgpool"
    takes = dict(kind.options)
    if cfg.noise:
        takes["noise_method"] = _NOISE_DEFAULTS["noise_method"]
        values["noise_method"] = cfg.noise_method
        if (cfg.noise_method or "density") == "trajectories":
            takes["noise_trajectories"] = _NOISE_DEFAULTS["noise_trajectories"]
    values.update({o: getattr(cfg, o) for o in _NOISE_DEFAULTS if o not in values})
    resolved = {}
    for option, value in values.items():
        if option in takes:
            resolved[option] = takes[option] if value is None else value
        elif value is not None and strict:
            flag = "--" + option.replace("_", "-")
            if option in _NOISE_DEFAULTS:
                raise ConfigError(
                    f"student.{option}={value!r} applies only "
                    + ("with --set student.noise=..." if option == "noise_method" else
                       "with --set student.noise_method=trajectories"), key=f"student.{option}")
            raise ConfigError(
                f"{flag} (student.{option}={value!r}) does not apply to the {cfg.name} "
                f"student; it takes: "
                + (", ".join("--" + o for o in kind.options) or "no student options"),
                key=f"student.{option}")
        else:
            resolved[option] = None
    return dataclasses.replace(cfg, **resolved)


def build_student(cfg: StudentConfig, num_classes: int,
                  image_shape: tuple[int, int, int]) -> nn.Module:
    """The student ``cfg.name`` for a task of ``num_classes`` classes of ``image_shape``.

    Options left None take the student's defaults (:func:`resolve_student`). With
    ``cfg.noise`` its circuit runs under that noise model (``quantum.noise``), in
    training and whenever the student is rebuilt from a checkpoint.
    """
    cfg = resolve_student(cfg)
    noise = None
    if cfg.noise:
        try:
            trajectories = [cfg.noise_trajectories] if cfg.noise_trajectories else []
            noise = NoisySimulator(cfg.noise, cfg.noise_method, *trajectories)
        except ValueError as exc:
            raise QdistillError(f"student.noise: {exc}") from None
    kind = STUDENTS[cfg.name]
    student = kind.build(cfg, num_classes, tuple(image_shape))
    if kind.trainable_circuit and parameter_split(student)["quantum"] == 0:
        raise QdistillError(f"this {cfg.name} student's circuit has no trainable parameter "
                            "(nothing quantum would be learned); give it layers or another "
                            "ansatz")
    if noise is not None:
        set_noise(student, noise)
    return student
