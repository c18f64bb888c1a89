"""Quantum students: classical images in, class logits ``(B, K)`` out.

    student = build_student(StudentConfig(name="paper-v1", qubits=3), num_classes=6,
                            image_shape=(1, 28, 28))
    logits = student(images)          # (B, 6); float images in [0, 1]

Every student is a :class:`Student` (``students/base.py``: the contract training,
evaluation, export and reports use). The kinds a config can name are the one table
:data:`STUDENTS` below; a user's own student is named by its file,
``--student my_student.py:MyStudent`` (``students/user.py``).

Adding a kind of student is one new file plus one table entry: write
``students/my_kind.py`` with a ``Student`` subclass and a builder
``build(cfg: StudentConfig, num_classes, image_shape) -> Student``, then add
``"my-kind": StudentKind(build, {option: default, ...}, trainable_circuit=True)`` to
``STUDENTS``. Its options are ``StudentConfig`` fields; any option it does not list is
refused for it.

Conventions every student follows:
- ``forward`` returns logits whose columns ``class_outputs`` are the K class logits.
  Almost every student returns exactly ``(B, K)``; the paper-v1 ``paper`` head returns
  the notebooks' 2^(n+1) entries, cross-entropy runs over all of them, and prediction
  and KD use ``class_logits(model, outputs)``: the mapping is declared, never guessed.
- Trainable parameters of the circuit (``student.circuit``) are quantum; everything
  else is classical. :func:`parameter_split` counts them that way.
- Basis state ``|j>`` reads wire 0 as its most significant bit (PennyLane's order).
"""

from __future__ import annotations

import dataclasses

from torch import nn

from ..config import StudentConfig
from ..errors import ConfigError, QdistillError
from ..quantum.noise import NoisySimulator, set_noise
from . import user
from .base import Student, StudentKind, check_student
from .fully_quantum import ANSATZE, READOUTS, QuantumStudent
from .paper_v1 import V1_ANGLES, V1_HEADS, PaperV1Student, V1Circuit, V1FrontEnd
from .paper_v2 import ENCODINGS, REDUCTIONS, PaperV2Student, Reduction, n_features

__all__ = [
    "ANSATZE", "ENCODINGS", "READOUTS", "REDUCTIONS", "STUDENTS", "V1_ANGLES", "V1_HEADS",
    "PaperV1Student", "PaperV2Student", "QuantumStudent", "Reduction", "Student",
    "StudentKind", "V1Circuit", "V1FrontEnd", "build_student", "check_student",
    "n_features", "parameter_split", "resolve_student", "student_kind",
]


def parameter_split(model: nn.Module) -> dict[str, int]:
    """{"classical": n, "quantum": m}: the parameters of ``model.circuit`` are quantum."""
    circuit = model.circuit if isinstance(model, Student) else None  # teachers: classical
    quantum = {id(p) for p in circuit.parameters()} if circuit is not None else set()
    out = {"classical": 0, "quantum": 0}
    for p in model.parameters():
        out["quantum" if id(p) in quantum else "classical"] += p.numel()
    return out


def _paper_v1(cfg: StudentConfig, k: int, shape: tuple[int, int, int]) -> Student:
    return PaperV1Student(k, shape, cfg.qubits, cfg.shots, cfg.head, cfg.angles)


def _paper_v2(cfg: StudentConfig, k: int, shape: tuple[int, int, int]) -> Student:
    return PaperV2Student(k, shape, cfg.qubits, cfg.reduction, cfg.encoding, cfg.shots)


def _quantum(cfg: StudentConfig, k: int, shape: tuple[int, int, int]) -> Student:
    return QuantumStudent(k, shape, cfg.qubits, cfg.reduction, cfg.encoding, cfg.ansatz,
                          cfg.layers, cfg.readout, cfg.shots)


# Options every student takes: name, qubits, shots, noise (+ its method/trajectories).
STUDENTS: dict[str, StudentKind] = {
    "paper-v1": StudentKind(_paper_v1, {"head": "logprob", "angles": "pi"}, False),
    "paper-v2": StudentKind(_paper_v2, {"reduction": "fc", "encoding": "amplitude"}, True),
    "quantum": StudentKind(_quantum, {"reduction": "avgpool", "encoding": "amplitude",
                                      "ansatz": "hea", "layers": 4, "readout": "probs"}, True),
}
_KIND_OPTIONS = ("head", "angles", "reduction", "encoding", "ansatz", "layers", "readout")
_NOISE_DEFAULTS = {"noise_method": "density", "noise_trajectories": 32}


def student_kind(name: str) -> StudentKind:
    """The kind ``name`` names: a built-in of :data:`STUDENTS`, or ``FILE.py:NAME``."""
    if name in STUDENTS:
        return STUDENTS[name]
    kind = user.user_kind(name)
    if kind is None:
        raise QdistillError(f"unknown student {name!r}; valid: {', '.join(sorted(STUDENTS))}, "
                            "or your own as FILE.py:NAME")
    return kind


def resolve_student(cfg: StudentConfig, strict: bool = True) -> StudentConfig:
    """``cfg`` with the student's own defaults filled in, and the options of other
    students (and the noise options without noise) left None: what runs, as recorded.

    ``strict``: an option given to a student that does not take it is an error naming
    both. ``strict=False`` drops such options instead (checkpoints written before
    options were checked recorded every option; a fully quantum student recorded with
    reduction ``fc`` ran with ``avgpool``).
    """
    kind = student_kind(cfg.name)
    if user.is_user_spec(cfg.name) and strict:  # the file as an absolute path: what runs
        cfg = dataclasses.replace(cfg, name=user.absolute_spec(cfg.name))
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
    kind = student_kind(cfg.name)
    student = kind.build(cfg, num_classes, tuple(image_shape))
    if kind.trainable_circuit and parameter_split(student)["quantum"] == 0:
        raise QdistillError(f"this {cfg.name} student's circuit has no trainable parameter "
                            "(nothing quantum would be learned); give it layers or another "
                            "ansatz")
    if noise is not None:
        set_noise(student, noise)
    return student
