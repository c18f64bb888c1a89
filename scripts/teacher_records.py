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

import sys
from pathlib import Path

from qdistill.teachers.records import write_record

OUT = Path(__file__).resolve().parents[1] / "results" / "teachers"

if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(write_record(Path(arg), OUT / Path(arg).name))
