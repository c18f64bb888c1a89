"""Records of trained teachers that a fresh clone needs without their weights.

    python scripts/teacher_records.py /work/teachers-bg/alexnet-fashion-mnist-0-5 ...

For each teacher run directory (``qdistill teacher train --out DIR``, finished), writes
``results/teachers/<name>/``: the run's ``config.json``, ``result.json`` and
``metrics.jsonl`` as they are, ``weights.json`` (the SHA-256 of ``best.safetensors``,
its size, the test accuracy), and ``logits-paper-v1.safetensors``: the teacher's logits
on the paper-v1 student training images of its task (the first 150 training images of
each class, the order ``make_task`` gives them; 900 x 6 or 1200 x 8 floats), with the
SHA-256 of those images, so the students' soft targets can be checked and reused
without the weights (AlexNet: 380 MB each, kept out of git).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from qdistill.config import DataConfig, from_dict
from qdistill.teachers.cache import load_teacher
from qdistill.training.evaluation import predict_logits
from qdistill.training.tasks import build_task

OUT = Path(__file__).resolve().parents[1] / "results" / "teachers"


def record(run: Path) -> Path:
    model, meta = load_teacher(run)
    out = OUT / run.name
    out.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "result.json", "metrics.jsonl"):
        shutil.copyfile(run / name, out / name)
    weights = (run / "best.safetensors").read_bytes()
    data = dict(meta["config"]["data"], train_per_class=150, test_per_class=150,
                val_per_class=50)
    task = build_task(from_dict(DataConfig, data), 0)
    images = task.train.images
    with torch.no_grad():
        logits = predict_logits(model.to("cpu"), images, device=torch.device("cpu"))
    save_file({"logits": logits.contiguous()}, str(out / "logits-paper-v1.safetensors"))
    (out / "weights.json").write_text(json.dumps({
        "best_safetensors_sha256": hashlib.sha256(weights).hexdigest(),
        "bytes": len(weights), "arch": meta["arch"], "dataset": meta["dataset"],
        "classes": meta["classes"], "epochs": meta["config"]["train"]["epochs"],
        "test_acc": meta["metrics"]["test_acc"], "best_epoch": meta["metrics"]["best_epoch"],
        "student_images": {"train_per_class": 150, "count": len(images),
                           "sha256": hashlib.sha256(images.numpy().tobytes()).hexdigest()},
        "command": f"qdistill teacher train --arch {meta['arch']} --dataset "
                   f"{meta['dataset']} --classes {meta['config']['data']['classes']} "
                   "--epochs 10 --device cpu --out DIR",
    }, indent=2) + "\n")
    return out


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(record(Path(arg)))
