"""The paper's v2 student (arXiv:2311.13810 v2): reduce the image to 2^Q / Q / 2Q
features, encode them, the v2 rotation block, <Z> of every qubit, a Linear head.
Also the fixed reductions the fully quantum student uses.

    qdistill distill --student paper-v2 --qubits 8 --reduction fc --encoding amplitude
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..errors import QdistillError, unknown_name
from ..quantum.layer import QuantumLayer, build_quantum_layer
from .base import IMAGE_TEXT, Student, check_memory

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


class ReducedStudent(Student):
    """A student whose classical front is a :class:`Reduction` times a fixed
    ``input_scale`` and whose circuit is the ``QuantumLayer`` registered as ``quantum``
    (the paper-v2 and the fully quantum student)."""

    reduce: Reduction
    quantum: QuantumLayer
    input_scale: float

    @property
    def circuit(self) -> QuantumLayer:
        return self.quantum  # registered as "quantum": the state_dict keys of saved runs

    def fit_preprocessing(self, images: torch.Tensor) -> None:
        self.reduce.fit(images)

    def circuit_input(self, x: torch.Tensor) -> torch.Tensor:
        """The features the encoding takes (B, F)."""
        return self.input_scale * self.reduce(x)


class PaperV2Student(ReducedStudent):
    """The paper's v2 student: reduction -> encoding -> the v2 rotation block -> <Z> of
    every qubit -> Linear(Q -> K) -> logits. Q = 4 or 8 in the paper (any Q that fits).
    Angle/dense encodings of fixed (pixel-valued) features use angles pi * x."""

    def __init__(self, num_classes: int, image_shape: tuple[int, int, int], qubits: int = 8,
                 reduction: str = "fc", encoding: str = "amplitude",
                 shots: int | None = None):
        super().__init__()
        if encoding not in ENCODINGS:
            raise unknown_name("encoding", encoding, ENCODINGS)
        check_memory(qubits)
        self.image_shape = tuple(image_shape)
        self.input_scale = math.pi if encoding != "amplitude" and reduction != "fc" else 1.0
        self.reduce = Reduction(reduction, image_shape, n_features(encoding, qubits))
        self.quantum = build_quantum_layer(qubits, encoding=encoding, ansatz="paper_v2",
                                           measurement="expval", shots=shots)
        self.head = nn.Linear(qubits, num_classes)
        self.num_classes, self.class_outputs = num_classes, list(range(num_classes))

    def logits_from_circuit(self, z: torch.Tensor) -> torch.Tensor:
        """The head: <Z> of every qubit (B, Q) -> logits (B, K)."""
        return self.head(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_from_circuit(self.quantum(self.circuit_input(x)))

    def export_info(self) -> dict[str, Any]:
        wires = self.quantum.measurement.wires
        return {
            "preprocessing": reduction_text(self.reduce, float(self.input_scale), self.quantum),
            "readout": {
                "kind": "expval_z",
                "readout_qubits": list(range(self.quantum.n_qubits)) if wires is None
                else list(wires),
                "outputs": "z_k = <Z> of readout_qubits[k] = P(bit 0) - P(bit 1)",
                "class_rule": "logits = linear.weight @ z + linear.bias (the student's head)",
                "linear": {"weight": self.head.weight.detach().cpu().tolist(),
                           "bias": [float(v) for v in self.head.bias.detach().cpu()]},
            },
        }


def encoding_name(layer: QuantumLayer) -> str:
    """amplitude | angle | dense: the encoding of a layer, as the config names it."""
    return type(layer.encoding).__name__.replace("Encoding", "").lower()


def reduction_text(reduce: Reduction, scale: float, layer: QuantumLayer) -> dict[str, Any]:
    """Export text of reduction -> scale -> encoding (paper-v2 and the quantum student)."""
    encoding = encoding_name(layer)
    return {
        "description": f"reduction {reduce.kind} -> {reduce.features} features, times "
                       f"scale {scale!r} -> {encoding} encoding",
        "reduction": reduce.kind, "scale": scale, "encoding": encoding,
        "image": IMAGE_TEXT,
        "circuit_input": {
            "amplitude": "features, normalised to unit norm as the amplitudes of basis "
                         "states |0>..|2**n-1>; prepared by Mottonen RY + CX state "
                         "preparation",
            "angle": "feature k -> RY(x_k) on qubit k",
            "dense": "features 2k, 2k+1 -> RY(x_2k) then RZ(x_2k+1) on qubit k",
        }[encoding],
    }
