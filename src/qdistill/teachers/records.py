"""Teachers known by a committed record instead of their weights.

An AlexNet teacher's weights are 380 MB and take hours to train on a CPU, but a student
grid needs only its logits on the students' training images (900 x 6 floats for a
paper-v1 task). A record holds those, with what identifies the teacher:

    results/teachers/<arch>-<dataset>-<classes>/
        config.json  result.json  metrics.jsonl   (the teacher run's own files)
        weights.json                              (SHA-256 of best.safetensors, accuracy,
                                                   the student images' SHA-256)
        logits-paper-v1.safetensors               (logits on those images)

    python scripts/teacher_records.py RUN_DIR     # write one (write_record)

A distillation run whose built-in teacher (``--teacher alexnet``) is not in the cache
uses a matching record (``find_record``: the same teacher config and data) before it
would train one: ``RecordedTeacher`` answers with the
recorded logits for exactly the recorded images and refuses any other image. Records
are looked for in ``$QDISTILL_TEACHER_RECORDS`` (directories separated by ``:``), else
in the source checkout's ``results/teachers``. The run's metadata says so
(``teacher.recorded``), and so do the grid tables.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..config import DataConfig, TeacherConfig, from_dict, to_dict
from ..data import Task
from ..errors import QdistillError
from ..training.evaluation import predict_logits
from ..training.tasks import build_task, config_key
from .cache import load_teacher

LOGITS = "logits-paper-v1.safetensors"
# The images a record holds logits for: the paper-v1 students' training images.
STUDENT_DATA = {"train_per_class": 150, "test_per_class": 150, "val_per_class": 50}


CHECKOUT = Path(__file__).resolve().parents[3]  # the source checkout (src/qdistill/teachers)


def record_dirs() -> list[Path]:
    env = os.environ.get("QDISTILL_TEACHER_RECORDS")
    if env is not None:
        return [Path(p) for p in env.split(":") if p]
    return [CHECKOUT / "results" / "teachers"]


def _shown(d: Path) -> str:
    """A record's path as a run's metadata keeps it: relative to the source checkout for
    the committed records (the same string in every clone), else absolute."""
    d = d.resolve()
    return str(d.relative_to(CHECKOUT)) if d.is_relative_to(CHECKOUT) else str(d)


def _digest(images: torch.Tensor) -> str:
    return hashlib.sha256(images.contiguous().numpy().tobytes()).hexdigest()


class RecordedTeacher(nn.Module):
    """A frozen teacher that is a table: recorded image -> recorded logits.

    Images come in as the student sees them (float, uint8 / 255) and are matched by
    their bytes; an image the record does not hold is an error, never a guess."""

    def __init__(self, images: torch.Tensor, logits: torch.Tensor, where: Path):
        super().__init__()
        if images.dtype != torch.uint8:
            raise QdistillError(f"{where}: a record holds uint8 images")
        self.where = where
        self.rows = {bytes(img.numpy().tobytes()): i for i, img in enumerate(images)}
        self.register_buffer("logits", logits.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        as_bytes = (x.detach().cpu() * 255).round().clamp(0, 255).to(torch.uint8)
        idx = [self.rows.get(bytes(img.numpy().tobytes())) for img in as_bytes]
        if any(i is None for i in idx):
            raise QdistillError(
                f"the teacher is known here only by its record {self.where}: logits on the "
                f"paper-v1 student images, and {sum(i is None for i in idx)} of these "
                f"{len(idx)} images are not among them; train the teacher (qdistill "
                "teacher train) to teach other images")
        return self.logits[torch.tensor(idx)].to(x.device)


def find_record(cfg: TeacherConfig, task: Task | None = None
                ) -> tuple[RecordedTeacher, dict[str, Any]] | None:
    """The record of teacher ``cfg`` (the same options; the same data content where the
    record has its fingerprint) in the record directories, or None. Either way the
    student images are checked against the record's SHA-256 when it is loaded."""
    for base in record_dirs():
        if not base.is_dir():
            continue
        for d in sorted(p for p in base.iterdir() if (p / LOGITS).is_file()):
            run = json.loads((d / "config.json").read_text())
            if run.get("arch") != cfg.arch or run.get("dataset") != cfg.data.dataset:
                continue
            # The same options (read through today's TeacherConfig, so a field added
            # since, at its default, changes nothing) and, where recorded, the same data.
            if config_key(from_dict(TeacherConfig, run["config"])) != config_key(cfg):
                continue
            if task is None:
                task = build_task(cfg.data, cfg.train.seed)
            recorded = json.loads((d / "weights.json").read_text()).get("data_fingerprint")
            if recorded in (None, task.fingerprint()):
                return load_record(d, task)
    return None


def load_record(d: Path, task: Task) -> tuple[RecordedTeacher, dict[str, Any]]:
    """The teacher of record ``d`` and its metadata (as a checkpoint's, ``recorded`` set);
    the images are rebuilt and checked against the recorded SHA-256."""
    run = json.loads((d / "config.json").read_text())
    weights = json.loads((d / "weights.json").read_text())
    result = json.loads((d / "result.json").read_text())
    spec = weights["student_images"]
    data = dict(run["config"]["data"], **spec.get("data", STUDENT_DATA))
    images = build_task(from_dict(DataConfig, data), 0).train.images
    if _digest(images) != weights["student_images"]["sha256"]:
        raise QdistillError(f"{d}: the student images found now are not the recorded ones "
                            "(their SHA-256 differs)")
    logits = load_file(str(d / LOGITS))["logits"]
    meta = {k: run[k] for k in ("kind", "arch", "dataset", "classes", "class_names",
                                "num_classes", "image_shape", "config", "config_key")}
    meta.update(weights_sha256=weights["best_safetensors_sha256"],
                data_fingerprint=task.fingerprint(), recorded=_shown(d),
                metrics={k: result[k] for k in ("test_acc", "val_acc", "best_epoch")})
    return RecordedTeacher(images, logits, d), meta


def write_record(run_dir: Path, out: Path,
                 student_data: dict[str, int] | None = None) -> Path:
    """Record the finished teacher run ``run_dir`` into ``out`` (see the module
    docstring); ``student_data``: which training images (per-class counts; default the
    paper-v1 students' ``STUDENT_DATA``). Returns ``out``."""
    student_data = dict(student_data or STUDENT_DATA)
    model, meta = load_teacher(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "result.json", "metrics.jsonl"):
        shutil.copyfile(run_dir / name, out / name)
    blob = (run_dir / "best.safetensors").read_bytes()
    data = dict(meta["config"]["data"], **student_data)
    images = build_task(from_dict(DataConfig, data), 0).train.images
    with torch.no_grad():
        logits = predict_logits(model.to("cpu"), images, device=torch.device("cpu"))
    save_file({"logits": logits.contiguous()}, str(out / LOGITS))
    cfg = from_dict(TeacherConfig, meta["config"])
    (out / "weights.json").write_text(json.dumps({
        "best_safetensors_sha256": hashlib.sha256(blob).hexdigest(),
        "bytes": len(blob), "arch": meta["arch"], "dataset": meta["dataset"],
        "classes": meta["classes"], "epochs": cfg.train.epochs,
        "test_acc": meta["metrics"]["test_acc"], "best_epoch": meta["metrics"]["best_epoch"],
        "student_images": {"train_per_class": student_data["train_per_class"],
                           "data": student_data, "count": len(images),
                           "sha256": _digest(images)},
        "command": f"qdistill teacher train --arch {cfg.arch} --dataset "
                   f"{cfg.data.dataset} --classes {cfg.data.classes} --epochs "
                   f"{cfg.train.epochs} --device cpu --out DIR",
        "config": to_dict(cfg), "data_fingerprint": meta.get("data_fingerprint"),
    }, indent=2) + "\n")
    return out
