"""The fully quantum student: a fixed reduction, an encoding, L layers of an entangling
ansatz, and basis-state (or <Z>) read-out; every trainable parameter but one scale is
in the circuit.

    qdistill distill --student quantum --qubits 4 --ansatz hea --layers 4 --readout probs
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..errors import QdistillError, unknown_name
from ..quantum.layer import build_quantum_layer
from .base import LOGPROB_FLOOR, basis_readout, check_memory, check_qubits
from .paper_v2 import ENCODINGS, ReducedStudent, Reduction, n_features, reduction_text

# Our short names -> the simulator's ansatz names.
ANSATZE = {"hea": "hardware_efficient", "strong": "strongly_entangling", "qcnn": "qcnn",
           "paper-v2": "paper_v2"}
READOUTS = ("probs", "z")


class QuantumStudent(ReducedStudent):
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
            check_qubits(qubits, num_classes, "quantum student (probs readout)")
        elif qubits < num_classes:
            raise QdistillError(f"quantum student (z readout): {num_classes} classes need "
                                f"at least {num_classes} qubits, got {qubits}")
        check_memory(qubits)
        self.readout, self.num_classes = readout, num_classes
        self.image_shape = tuple(image_shape)
        self.input_scale = math.pi if encoding != "amplitude" else 1.0
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

    def logits_from_circuit(self, out: torch.Tensor) -> torch.Tensor:
        """The head: the circuit's output (probabilities of the readout wires, or their
        <Z>) -> logits (B, K)."""
        out = out[:, :len(self.class_outputs)]  # classes 0..K-1: a slice, no index copy
        if self.readout == "probs":
            return torch.log(out + LOGPROB_FLOOR)
        return self.scale * out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_from_circuit(self.quantum(self.circuit_input(x)))

    def export_info(self) -> dict[str, Any]:
        wires = self.quantum.measurement.wires
        wires = list(range(self.quantum.n_qubits)) if wires is None else list(wires)
        if self.readout == "probs":
            readout = basis_readout(wires, self.class_outputs, "logprob")
        else:
            readout = {
                "kind": "expval_z", "readout_qubits": wires,
                "class_outputs": self.class_outputs,
                "outputs": "z_k = <Z> of readout_qubits[k] = P(bit 0) - P(bit 1)",
                "class_rule": "logits_i = scale * z_{class_outputs[i]}",
                "scale": float(self.scale.detach()),
            }
        return {"preprocessing": reduction_text(self.reduce, float(self.input_scale),
                                                self.quantum),
                "readout": readout}
