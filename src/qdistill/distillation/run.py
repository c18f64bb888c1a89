"""Train one quantum student, with or without a frozen classical teacher.

    qdistill distill --teacher lenet --student paper-v1 --qubits 3 \\
        --dataset fashion-mnist --classes 0-5 --seed 0

The teacher is trained once and cached (``runs.get_teacher``), its logits on the
student's training images are computed once and cached (``soft_targets.teacher_logits``),
and ``--teacher none`` trains the very same student with plain cross-entropy: the
baseline differs from the distilled run in the loss alone.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__
from ..config import DataConfig, DistillConfig, TeacherConfig, TrainConfig, to_dict, validate
from ..data import ImageSet, Task
from ..errors import QdistillError
from ..losses import KDLoss
from ..losses.hint import standardize_features, teacher_with_features
from ..quantum.memory import check_statevector_memory
from ..students import build_student, parameter_split, resolve_student
from ..students.user import identity as student_identity
from ..teachers.cache import get_teacher, load_teacher, teacher_dir
from ..teachers.models import TEACHERS, check_teacher
from ..teachers.records import find_record
from ..training import checkpoint
from ..training.fit import (
    EpochCallback,
    cpu_threads,
    cross_entropy,
    fit,
    resolve_device,
    seed_everything,
)
from ..training.resume import FitResult
from ..training.tasks import build_task
from .soft_targets import teacher_logits


def teacher_config_for(cfg: DistillConfig, arch: str | None = None) -> TeacherConfig:
    """The teacher a distillation run asks for: same dataset and classes, trained on the
    whole training split of those classes (the paper's protocol), cached by config and
    by the content of that data (``data_dir`` only says where to read it).

    ``arch``: what is trained, when ``cfg.kd.teacher`` does not say it by name (a
    ``FILE.py:NAME`` teacher: ``py:NAME@sha256:<file hash>``, so the cache key holds the
    file's content and not its path)."""
    return TeacherConfig(
        arch=arch or cfg.kd.teacher,
        data=DataConfig(dataset=cfg.data.dataset, classes=cfg.data.classes,
                        data_dir=cfg.data.data_dir),
        train=TrainConfig(epochs=cfg.kd.teacher_epochs, seed=cfg.kd.teacher_seed,
                          device=cfg.train.device),
    )


def resolve_teacher(cfg: DistillConfig, task: Task
                    ) -> tuple[nn.Module | None, dict[str, Any] | None]:
    """(teacher, metadata), or (None, None) for ``--teacher none``.

    ``kd.teacher`` is a teacher name (trained, or loaded from the cache when one was
    trained on the same options *and* the same data content: its key holds the teacher
    task's fingerprint), the path of a teacher run directory, ``FILE.py:NAME`` (your
    own module class or factory: loaded from ``kd.teacher_weights`` and frozen, or
    trained and cached like a built-in teacher) or ``FILE.onnx`` (run by onnxruntime);
    see :mod:`qdistill.teachers.user`. A teacher trained on other classes is refused.
    """
    from ..teachers.user import (
        PyTeacher,
        get_py_teacher,
        load_onnx_teacher,
        parse_teacher_spec,
        py_teacher_with_weights,
    )

    name = cfg.kd.teacher
    spec = None if name == "none" or name in TEACHERS else parse_teacher_spec(name)
    if cfg.kd.teacher_weights is not None and (spec is None or spec.kind != "py"):
        raise QdistillError(f"--teacher-weights is for --teacher FILE.py:NAME (your own "
                            f"module), not --teacher {name}")
    if name == "none":
        return None, None
    expect = {"dataset": task.dataset, "classes": list(task.classes)}
    if name in TEACHERS:
        # Not trained here yet: a committed record of it (teachers/records.py) teaches
        # the images it was recorded on, instead of hours of training.
        tcfg = teacher_config_for(cfg)
        t_task = build_task(tcfg.data, tcfg.train.seed)
        found = None if checkpoint.exists(teacher_dir(tcfg, t_task) / "best") \
            else find_record(tcfg, t_task)
        teacher, meta = found or get_teacher(tcfg, t_task)
    elif spec is not None and spec.kind == "onnx":
        teacher = load_onnx_teacher(spec.path, task.image_shape, task.num_classes)
        # The identity of an ONNX teacher (its cached logits) is the file's SHA-256.
        meta = user_teacher_meta(teacher, task, arch=teacher.arch,
                                 weights_sha256=teacher.sha256)
    elif spec is not None:  # FILE.py:NAME
        py = PyTeacher(spec.path, spec.name)
        if cfg.kd.teacher_weights is not None:
            teacher = py_teacher_with_weights(py, cfg.kd.teacher_weights,
                                              task.num_classes, task.image_shape)
            # The same weights under an edited forward() are another teacher.
            meta = user_teacher_meta(teacher, task, arch=py.arch, identity=py.arch)
        else:
            teacher, meta = get_py_teacher(py, teacher_config_for(cfg, arch=py.arch))
    elif Path(name).exists():
        teacher, meta = load_teacher(name)
    else:
        raise QdistillError(f"unknown teacher {name!r}; valid: none, "
                            f"{', '.join(sorted(TEACHERS))}, or a teacher run directory "
                            "(or your own: FILE.py:NAME, FILE.onnx)")
    for key, want in expect.items():
        if meta.get(key) != want:
            raise QdistillError(
                f"teacher {name} was trained on {key}={meta.get(key)!r} but the student's "
                f"task has {key}={want!r}; train a teacher for this task")
    return teacher, meta


def user_teacher_meta(teacher: nn.Module, task: Task, arch: str | None = None,
                      weights_sha256: str | None = None, identity: str = ""
                      ) -> dict[str, Any]:
    """Metadata for a user's own teacher module (checked against the task first); the
    weights hash keys its cached logits.

    ``weights_sha256``: the hash, when the weights are not in the state dict (an ONNX
    teacher: the file's SHA-256); else the SHA-256 of the state dict's names and bytes,
    followed by ``identity`` when given (a ``FILE.py:NAME`` teacher: its ``arch``, which
    holds the file's SHA-256). ``arch``: default ``user:<class name>``.
    """
    check_teacher(teacher, task.image_shape, task.num_classes)
    if weights_sha256 is None:
        h = hashlib.sha256()
        for k, v in sorted(teacher.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        if identity:
            h.update(f"|{identity}".encode())
        weights_sha256 = h.hexdigest()
    return {"arch": arch or f"user:{type(teacher).__name__}", "weights_sha256": weights_sha256,
            "dataset": task.dataset, "classes": list(task.classes)}


def _with_transfer(labelled: ImageSet, transfer: ImageSet | None) -> ImageSet:
    """The labelled images followed by the transfer set's (labels -1), or the labelled
    ones alone."""
    if transfer is None or len(transfer) == 0:
        return labelled
    return ImageSet(torch.cat([labelled.images, transfer.images]),
                    torch.cat([labelled.labels, transfer.labels]))


def check_batch_memory(cfg: DistillConfig) -> None:
    """Refuse a run whose training or evaluation batch of states cannot fit in memory
    on its device (build_student only checks one state: at 20 qubits one state is 8
    MiB, a batch of 1024 is 8 GiB). A noisy student holds density matrices (4**n
    entries, like 2n qubits) or ``noise_trajectories`` statevectors per sample."""
    s, train = cfg.student, cfg.train
    qubits, per_sample = s.qubits, 1
    if s.noise and s.noise_method == "density":
        qubits = 2 * s.qubits
    elif s.noise:
        per_sample = s.noise_trajectories
    device = resolve_device(train.device)
    for flag, batch in (("--batch-size", train.batch_size),
                        ("--set train.eval_batch_size=N", train.eval_batch_size)):
        try:
            check_statevector_memory(qubits, batch * per_sample, device=device)
        except ValueError as exc:
            raise QdistillError(f"{s.name} student: {exc} Lower {flag}.") from None


def run_distill(cfg: DistillConfig, out_dir: str | Path | None = None,
                teacher: nn.Module | None = None, callbacks: Sequence[EpochCallback] = ()
                ) -> tuple[nn.Module, FitResult, dict[str, Any]]:
    """Train the student ``cfg`` describes; returns (student, result, run metadata).

    ``callbacks``: called with every epoch's metrics (:mod:`qdistill.training.tracking`).

    ``teacher``: your own trained ``nn.Module`` (images (B, C, H, W) in [0, 1] -> logits
    (B, K) over the task's classes, in the task's class order); it replaces
    ``cfg.kd.teacher``::

        student, result, meta = run_distill(cfg, "runs/mine", teacher=my_cnn)
    """
    # Check the ranges, the KD settings, the output directory and the student (names,
    # options, qubits for the classes, memory) before any slow work or any file is
    # written: a teacher may need training. The config recorded is the resolved one
    # (the student's own defaults filled in): what runs.
    validate(cfg)
    cfg = dataclasses.replace(cfg, student=resolve_student(cfg.student))
    kd = KDLoss(cfg.kd.temperature, cfg.kd.alpha, cfg.kd.variant, options=cfg.kd.options)
    if out_dir is not None:
        checkpoint.check_writable_dir(out_dir, "student run directory")
    task = build_task(cfg.data, cfg.train.seed)
    # Seeded here, so the initial weights do not depend on whether a teacher is trained
    # next (fit reseeds before training, so nothing later depends on that either).
    seed_everything(cfg.train.seed)
    student = build_student(cfg.student, task.num_classes, task.image_shape)
    # What runs: a student from your file has the qubits its circuit has.
    cfg = dataclasses.replace(cfg, student=dataclasses.replace(
        cfg.student, qubits=int(getattr(student.circuit, "n_qubits", cfg.student.qubits))))
    check_batch_memory(cfg)
    if teacher is not None:
        tmeta: dict[str, Any] | None = user_teacher_meta(teacher, task)
    else:
        teacher, tmeta = resolve_teacher(cfg, task)
    soft = None
    loss_fn: Any = cross_entropy
    train = task.train
    if teacher is not None:
        # A transfer set joins the labelled images with its labels hidden (-1): the
        # teacher's soft targets are all the student learns from it. Without a teacher
        # it would teach nothing, so the baseline trains on the labelled images alone.
        train = _with_transfer(task.train, task.transfer)
        if getattr(kd, "needs_teacher_features", False):  # a hint: logits + features
            with_features = teacher_with_features(teacher)
            soft = standardize_features(teacher_logits(
                with_features, tmeta, train.images, preprocess="uint8/255+penultimate"),
                task.num_classes)
            with_features.close()
        else:
            soft = teacher_logits(teacher, tmeta, train.images)
        loss_fn = kd
    student.fit_preprocessing(train.float_images())  # e.g. PCA, on the train split only
    kd.class_outputs = student.class_outputs
    if teacher is not None and getattr(kd, "needs_teacher_features", False):
        with torch.no_grad():
            width = student.circuit_input(train.float_images()[:1]).reshape(1, -1).shape[1]
        kd.attach(student, width, soft.shape[1] - task.num_classes)
    split = parameter_split(student)
    meta = {
        "kind": "student", "student": to_dict(cfg.student), "dataset": task.dataset,
        "classes": list(task.classes), "num_classes": task.num_classes,
        "image_shape": list(task.image_shape), "config": to_dict(cfg),
        "task": {k: v for k, v in task.describe().items() if k != "source"},
        "data_fingerprint": task.fingerprint(),  # the content of the data used
        "parameters": split, "qdistill_version": __version__,
        "student_identity": student_identity(cfg.student.name),
        "teacher": None if tmeta is None else {
            "arch": tmeta["arch"], "weights_sha256": tmeta["weights_sha256"],
            "test_acc": tmeta.get("metrics", {}).get("test_acc"),
            "epochs": tmeta.get("config", {}).get("train", {}).get("epochs"),
            "data_fingerprint": tmeta.get("data_fingerprint"),
            "recorded": tmeta.get("recorded"),  # soft targets from a committed record
        },
    }
    teacher_name = "none" if teacher is None else tmeta["arch"]
    small_cpu_batches = resolve_device(cfg.train.device).type == "cpu" and \
        cfg.train.batch_size <= 4
    try:
        with cpu_threads(1 if small_cpu_batches else None):
            result = fit(student, train, task.val, task.test, cfg.train, loss_fn=loss_fn,
                         soft_targets=soft, out_dir=out_dir, run_meta=meta,
                         desc=f"student {cfg.student.name} (teacher {teacher_name})",
                         callbacks=callbacks)
    finally:
        if hasattr(loss_fn, "detach"):  # a loss that reads the student (hint)
            loss_fn.detach()
    return student, result, meta


def load_student(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Load a trained student from its run directory (or ``.../best`` stem), in eval mode.

    The architecture is rebuilt from the checkpoint's own metadata, and the weights must
    fit it exactly (PCA components and other buffers included).
    """
    from ..config import StudentConfig, from_dict

    p = Path(path)
    stem = p / "best" if p.is_dir() else p
    tensors, meta = checkpoint.load(stem)
    if meta.get("kind") != "student":
        raise QdistillError(f"{stem} is not a student checkpoint (kind={meta.get('kind')!r})")
    cfg = resolve_student(from_dict(StudentConfig, meta["student"]), strict=False)
    recorded = meta.get("student_identity")
    if recorded is not None and student_identity(cfg.name) != recorded:
        raise QdistillError(f"{stem}: the student file {cfg.name.rpartition(':')[0]} has "
                            "changed since this run was trained; restore it (the run "
                            f"recorded {recorded})")
    model = build_student(cfg, meta["num_classes"], tuple(meta["image_shape"]))
    checkpoint.load_into(model, tensors, str(stem))
    model.eval()
    return model, meta
