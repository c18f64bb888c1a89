"""Take a trained student out of qdistill: its circuit for one image, as OpenQASM 3.

    paths = export_student("runs/distill/my-run", 3)      # test image 3 of the run's task
    # {"qasm": Path(".../export/test-3.qasm"), "json": Path(".../export/test-3.json")}

A student is classical pre-processing -> a circuit -> classical read-out. Only the
middle part can run on other hardware, so the ``.qasm`` holds the circuit with this
image's inputs baked in as gate angles (amplitude encoding compiled to RY + CX), in the
standard gate library only; the ``.json`` beside it holds the rest: what the image went
through before the circuit, how measured bits become class logits, and the student's
own exact probabilities, so counts from any backend can be checked against qdistill
and turned into the same prediction.

The ``.qasm`` is the ideal (noiseless) circuit. The JSON's ``ideal`` block holds its
probabilities, outputs, logits and prediction; a student trained with a noise model
(``student.noise``) also gets a ``noisy`` block: the same circuit and numbers under that
noise model, which is how the student itself runs (``trained_and_evaluated_with``
names the block). Within a block every number follows from its probabilities by the
``readout`` rule, so no field mixes the two.
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..distillation.run import load_student
from ..errors import QdistillError
from ..quantum.gates import Op, apply_ops
from ..quantum.measure import Measurement, marginal_probabilities, probabilities
from ..quantum.noise import NoisySimulator, readout_flip
from ..quantum.qasm import to_qasm3
from ..quantum.state import zero_state
from ..students import Student
from ..training.checkpoint import atomic_write_bytes, atomic_write_json, check_writable_dir
from ..training.evaluation import as_float, class_logits

__all__ = ["BIT_ORDER", "StudentCircuit", "export_student", "image_from_array", "student_circuit"]

# Gate list vs the student's own simulation: both exact, so only float32 rounding
# separates them; a larger gap means the gate list is not the student's circuit.
_SELF_CHECK_TOL = 1e-4

BIT_ORDER = {
    "basis_index": "basis state |j> of n qubits reads qubit 0 as its most significant bit "
                   "(as in qdistill and PennyLane): j = sum_k b_k * 2**(n-1-k), b_k the "
                   "bit of qubit k",
    "openqasm": "'c = measure q;' stores qubit k in c[k], so j = sum_k c[k] * 2**(n-1-k): "
                "reading c[0] c[1] ... c[n-1] left to right gives j in binary",
    "qiskit": "Qiskit prints counts keys little-endian, c[n-1] ... c[0] (c[0] rightmost), "
              "so j = int(key[::-1], 2): reverse the key before reading it as binary",
}


class StudentCircuit(NamedTuple):
    """The quantum part of a student for one image, and what surrounds it."""

    input: list[float]  # what the circuit encodes (angles or features)
    ops: list[Op]  # encoding + trained gates, concrete angles
    n_qubits: int
    preprocessing: dict[str, Any]  # image -> input
    readout: dict[str, Any]  # measurement -> class logits
    probabilities: list[float]  # exact, all 2**n basis states (qdistill's simulator)
    outputs: list[float]  # what the circuit hands to the classical read-out


@contextlib.contextmanager
def _set_all(model: nn.Module, attr: str, value: Any,
             which: Callable[[nn.Module], bool]) -> Iterator[None]:
    """Set ``attr`` to ``value`` on every sub-module ``which`` selects, for the duration;
    each gets its own value back afterwards."""
    saved = [(m, getattr(m, attr)) for m in model.modules() if which(m)]
    try:
        for m, _ in saved:
            setattr(m, attr, value)
        yield
    finally:
        for m, old in saved:
            setattr(m, attr, old)


def _exact(model: nn.Module) -> contextlib.AbstractContextManager[None]:
    """Switch finite-shot measurements to exact values for the duration (an export
    records the circuit's distribution, not one draw from it)."""
    return _set_all(model, "shots", None, lambda m: isinstance(m, Measurement))


def _noiseless(model: nn.Module) -> contextlib.AbstractContextManager[None]:
    """Run every circuit of ``model`` without its noise model for the duration (the
    ``.qasm`` is the ideal circuit)."""
    return _set_all(model, "noise", None,
                    lambda m: isinstance(getattr(m, "noise", None), NoisySimulator))


def _floats(t: torch.Tensor) -> list[float]:
    return [float(v) for v in t.detach().reshape(-1).cpu().tolist()]


def student_circuit(student: Student, x: torch.Tensor) -> StudentCircuit:
    """The circuit of ``student`` for one image ``x (1, C, H, W)``: exact (no shots) and
    ideal (a noise model attached to the student is left out). Works for any
    :class:`~qdistill.students.Student` whose circuit has ``ops`` (every circuit built
    from ``qdistill.quantum``)."""
    if not isinstance(student, Student):
        raise QdistillError(f"cannot export a {type(student).__name__}: not a qdistill "
                            "student (qdistill.students.Student)")
    circuit = student.circuit
    if not callable(getattr(circuit, "ops", None)):
        raise QdistillError(f"cannot export {type(student).__name__}: its circuit "
                            f"({type(circuit).__name__}) does not list its gates (ops); "
                            "build it from qdistill.quantum to export it")
    with torch.no_grad(), _exact(student), _noiseless(student):
        inp = student.circuit_input(x)
        try:
            ops = circuit.ops(inp[0])
            outputs = circuit(inp)
        except ValueError as exc:  # e.g. an all-zero feature vector under amplitude encoding
            raise QdistillError(f"cannot export this image: {exc}") from None
        # The probabilities of all qubits, from the gate list on qdistill's simulator in
        # complex128 (also the self-check that ops is the circuit forward runs).
        state = apply_ops(zero_state(circuit.n_qubits, 1, dtype=torch.complex128), ops)
        probs = probabilities(state)
        from_ops = circuit.measurement.from_probabilities(
            marginal_probabilities(probs, circuit.measurement.wires))
    gap = float((from_ops.to(outputs.dtype) - outputs).abs().max())
    if not gap <= _SELF_CHECK_TOL:
        raise RuntimeError(f"exported gates disagree with the student by {gap:.2e}; "
                           "this is a qdistill bug (or the circuit's ops are not its forward)")
    info = student.export_info()
    # Outputs from the same complex128 probabilities: within the JSON every number follows
    # from the probabilities by the read-out rule (the student's float32 forward agrees
    # to _SELF_CHECK_TOL, checked above).
    return StudentCircuit(
        input=_floats(inp[0]), ops=ops, n_qubits=circuit.n_qubits,
        preprocessing=info["preprocessing"], readout=info["readout"],
        probabilities=_floats(probs[0]), outputs=_floats(from_ops[0]))


# Trajectory noise is Monte Carlo: the noisy block is computed from this seed (recorded),
# so an export is reproducible and the student's own forward can be rerun to match it.
NOISY_TRAJECTORY_SEED = 0


class _Run(NamedTuple):
    probabilities: list[float]  # all 2**n basis states, as 'c = measure q;' reads them
    outputs: list[float]  # what the circuit hands to the head
    logits: list[float]  # the student's class logits from those outputs


def _head(student: nn.Module, outputs: list[float]) -> list[float]:
    """The student's head (``logits_from_circuit``, class columns) on circuit outputs."""
    dtype = next(student.parameters()).dtype
    out = torch.tensor([outputs], dtype=dtype)
    with torch.no_grad():
        return _floats(class_logits(student, student.logits_from_circuit(out))[0])


def _noisy_run(student: nn.Module, x: torch.Tensor, sim: NoisySimulator
               ) -> tuple[_Run, dict[str, Any]]:
    """The circuit of ``x`` under the student's noise model, exact in shots: what the
    student's own forward computes, and the probabilities of all qubits it comes from."""
    module = student.circuit
    measurement, n = module.measurement, module.n_qubits
    seed = NOISY_TRAJECTORY_SEED if sim.method == "trajectories" else None
    with torch.no_grad(), _exact(student):
        inp = student.circuit_input(x)
        if seed is not None:
            sim.reseed(seed)
        p = sim.probabilities(module.gates(inp), n, 1, inp.device)
        r = sim.noise.readout
        # Readout flips act bit by bit, so flipping all n measured bits then taking the
        # readout wires' marginal equals what the student's forward does (marginal, flip).
        outputs = measurement.from_probabilities(
            readout_flip(marginal_probabilities(p, measurement.wires), r))
        run = _Run(_floats(readout_flip(p, r)[0]), _floats(outputs[0]), [])
    info = {"noise_model": sim.noise.spec(), "method": sim.method,
            "trajectories": sim.trajectories if seed is not None else None,
            "trajectory_seed": seed}
    return run._replace(logits=_head(student, run.outputs)), info


def _student_noise(student: Student) -> NoisySimulator | None:
    sim = getattr(student.circuit, "noise", None)
    return sim if isinstance(sim, NoisySimulator) else None


def image_from_array(array: np.ndarray | torch.Tensor, image_shape: tuple[int, ...]
                     ) -> torch.Tensor:
    """A (1, C, H, W) float image from a uint8 (0..255) or float ([0, 1]) array of
    shape (C, H, W), or (H, W) for one-channel tasks."""
    a = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
    shape = tuple(int(s) for s in image_shape)
    if a.shape != shape and not (shape[0] == 1 and a.shape == shape[1:]):
        raise QdistillError(f"image has shape {a.shape}; this student takes {shape} "
                            f"(C, H, W){' or ' + str(shape[1:]) if shape[0] == 1 else ''}")
    if a.dtype == np.uint8:
        x = torch.from_numpy(a.astype(np.float32) / 255.0)
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise QdistillError("image has NaN or infinite pixels")
        x = torch.from_numpy(a.astype(np.float32))
    else:
        raise QdistillError(f"image dtype {a.dtype} is neither uint8 (0..255) nor float "
                            "([0, 1])")
    return x.reshape(1, *shape)


def _load_npy(path: Path, image_shape: tuple[int, ...]) -> torch.Tensor:
    if not path.is_file():
        raise QdistillError(f"image file {path} does not exist")
    try:
        a = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise QdistillError(f"cannot read {path} as a .npy array: {exc}") from None
    if not isinstance(a, np.ndarray):
        raise QdistillError(f"{path} is an .npz archive; save one image with numpy.save")
    return image_from_array(a, image_shape)


def _test_image(meta: dict[str, Any], index: int) -> tuple[torch.Tensor, dict[str, Any]]:
    """Test image ``index`` of the student's own task, rebuilt from its config."""
    from ..training.tasks import task_of_run

    task = task_of_run(meta)
    n = len(task.test)
    if not 0 <= index < n:
        raise QdistillError(f"test index {index} is out of range: the student's test split "
                            f"has {n} images (0..{n - 1})")
    label = int(task.test.labels[index])
    info = {"source": "test split", "test_index": index, "label": label,
            "original_label": task.classes[label], "class_name": task.class_names[label]}
    return as_float(task.test.images[index:index + 1]), info


def _resolve_image(image: Any, meta: dict[str, Any]
                   ) -> tuple[torch.Tensor, dict[str, Any], str]:
    """(x (1, C, H, W), description, file stem) for a test index, .npy path or array."""
    shape = tuple(meta["image_shape"])
    if isinstance(image, bool):
        raise QdistillError("image must be a test index, a .npy path or an array")
    if isinstance(image, (int, np.integer)):
        x, info = _test_image(meta, int(image))
        return x, info, f"test-{int(image)}"
    if isinstance(image, (str, Path)):
        path = Path(image)
        return _load_npy(path, shape), {"source": "file", "path": str(path)}, path.stem
    return image_from_array(image, shape), {"source": "array"}, "image"


def export_student(run_dir: str | Path, image: int | str | Path | np.ndarray | torch.Tensor,
                   out_dir: str | Path | None = None, shots: int | None = None
                   ) -> dict[str, Path]:
    """Write ``<stem>.qasm`` and ``<stem>.json`` for one image; return their paths.

    ``image``: an index into the student's test split (stem ``test-<i>``), a ``.npy``
    path (its stem), or an array of the task's image shape (stem ``image``).
    ``out_dir`` defaults to ``<run_dir>/export``; ``shots`` is recorded as
    ``// shots: N`` in the program and in the JSON.
    """
    run = Path(run_dir)
    if not run.exists():
        raise QdistillError(f"run directory {run} does not exist; give the --out "
                            "directory of a 'qdistill distill' run")
    if shots is not None and (isinstance(shots, bool) or int(shots) < 1):
        raise QdistillError(f"shots must be a positive integer, got {shots!r}")
    check_writable_dir(Path(out_dir) if out_dir is not None else run / "export",
                       "export directory")
    student, meta = load_student(run)
    x, source, stem = _resolve_image(image, meta)
    name = meta["student"]["name"]
    circ = student_circuit(student, x)
    ideal = _Run(circ.probabilities, circ.outputs, _head(student, circ.outputs))
    sim = _student_noise(student)
    noisy, noise_info = _noisy_run(student, x, sim) if sim is not None else (None, {})
    classes = list(meta["classes"])
    class_names = meta.get("task", {}).get("class_names")

    def block(run: _Run, description: str, **extra: Any) -> dict[str, Any]:
        pred = int(np.argmax(run.logits))
        return {"description": description, **extra, "probabilities": run.probabilities,
                "outputs": run.outputs, "logits": run.logits, "predicted_class": pred,
                "predicted_original_label": classes[pred],
                "predicted_class_name": class_names[pred] if class_names else None}
    out = Path(out_dir) if out_dir is not None else run / "export"
    qasm_path, json_path = out / f"{stem}.qasm", out / f"{stem}.json"
    try:
        qasm = to_qasm3(circ.ops, circ.n_qubits, shots, comments=[
            f"qdistill {__version__}: {name} student from {run}, image {stem}",
            f"classical pre-/post-processing and bit order: {json_path.name}"])
    except ValueError as exc:
        raise QdistillError(f"cannot export {run}: {exc}") from None
    doc = {
        "format": "qdistill-export/2", "qdistill_version": __version__,
        "run": {"dir": str(run), "student": meta["student"],
                "trained_with_qdistill": meta.get("qdistill_version"),
                "weights_sha256": meta.get("weights_sha256")},
        "task": {"dataset": meta["dataset"], "classes": classes, "class_names": class_names,
                 "image_shape": list(meta["image_shape"])},
        "image": source,
        "qasm": {"file": qasm_path.name, "n_qubits": circ.n_qubits, "gates": len(circ.ops),
                 "gate_counts": dict(Counter(op.name for op in circ.ops)), "shots": shots,
                 "student_shots": meta["student"].get("shots")},
        "preprocessing": circ.preprocessing,
        "circuit_input": circ.input,
        "measurement": {"measured_qubits": list(range(circ.n_qubits)),
                        "bits": "c[k] = qubit k", "bit_order": BIT_ORDER},
        "readout": circ.readout,
        "probabilities_note": "in each block: exact (no shots), all 2**n basis states as "
                              "'c = measure q;' reads them, index j as in bit_order; "
                              "qdistill's simulator. outputs, logits and predicted_class "
                              "of a block follow from its probabilities by the readout",
        "trained_and_evaluated_with": "noisy" if noisy is not None else "ideal",
        "trained_and_evaluated_with_note": (
            f"the student was trained, and runs in qdistill, with its circuit under the "
            f"noise model {noise_info['noise_model']!r} (student.noise): its own "
            f"prediction is the 'noisy' block; 'ideal' is the noiseless circuit in the "
            f".qasm" if noisy is not None else
            "the student has no noise model: its own prediction is the 'ideal' block, "
            "the circuit in the .qasm"),
        "ideal": block(ideal, "the noiseless circuit the .qasm describes; logits = the "
                              "student's head on these outputs"),
        "noisy": None if noisy is None else block(
            noisy, "the same circuit under the student's noise model: after every gate, "
                   "depolarizing (and damping) on its wires; every measured bit flipped "
                   "with probability readout (docs/hardware.md); logits = the student's "
                   "head on these outputs, as the student's own forward gives them"
                   + (" (Monte-Carlo trajectories from trajectory_seed)"
                      if noise_info["method"] == "trajectories" else " (exact density "
                                                                      "matrices)"),
            **noise_info),
    }
    values = [v for run in (ideal, noisy) if run is not None
              for v in run.probabilities + run.outputs + run.logits]
    if any(not math.isfinite(v) for v in values):
        raise QdistillError(f"the student in {run} gives non-finite values for this image")
    atomic_write_bytes(qasm_path, qasm.encode())
    atomic_write_json(json_path, doc)
    return {"qasm": qasm_path, "json": json_path}
