#!/usr/bin/env python
"""Watch a paper-v1 student collapse under distillation, step by step.

Replays the first steps of one committed grid run (its config: data, seed, teacher,
the run's KDLoss: the notebooks' CE + alpha*T^2*KL) with batch 1 and Adam, exactly in the order of
``fit``'s first epoch, and prints every 150 steps: the two loss terms, the front end's
angles (mean |theta|, the fraction at |theta| > 3, and their spread across images)
and the accuracy on the first 400 training images.

    python scripts/collapse_diagnosis.py                        # KD, the paper's angles
    python scripts/collapse_diagnosis.py --loss ce              # the same run, no teacher
    python scripts/collapse_diagnosis.py --angles half-pi       # theta = pi/2 tanh

Default run: results/paper-v1-logprob/runs/mnist_0-7_q3_lenet-te10_s1 (collapsed to
chance in the committed grid). Output of the three commands: README, "A fix for the
collapse". About a minute each on one core; needs the LeNet teacher (trained into the
cache on first use, ~40 s).
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F

from qdistill.config import DistillConfig, from_dict
from qdistill.distillation.run import resolve_teacher
from qdistill.distillation.soft_targets import teacher_logits
from qdistill.losses import KDLoss
from qdistill.students import build_student
from qdistill.training.evaluation import as_float
from qdistill.training.fit import _epoch_order, cross_entropy, seed_everything
from qdistill.training.tasks import build_task

RUN = "results/paper-v1-logprob/runs/mnist_0-7_q3_lenet-te10_s1"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--run", default=RUN, help="a paper-v1 run directory with a teacher")
    ap.add_argument("--loss", choices=("kd", "ce"), default="kd")
    ap.add_argument("--angles", choices=("pi", "half-pi"), default="pi")
    ap.add_argument("--steps", type=int, default=1200)
    args = ap.parse_args()

    cfg = from_dict(DistillConfig, json.load(open(f"{args.run}/config.json"))["config"])
    cfg.student.angles = args.angles
    task = build_task(cfg.data, cfg.train.seed)
    seed_everything(cfg.train.seed)  # as run_distill: the student first
    student = build_student(cfg.student, task.num_classes, task.image_shape)
    teacher, meta = resolve_teacher(cfg, task)
    soft = teacher_logits(teacher, meta, task.train.images)
    t = cfg.kd.temperature
    kd = KDLoss(t, cfg.kd.alpha, cfg.kd.variant, getattr(student, "class_outputs", None))
    seed_everything(cfg.train.seed)  # as fit
    opt = torch.optim.Adam(student.parameters(), lr=cfg.train.lr)
    x_all, y_all = as_float(task.train.images), task.train.labels
    order = _epoch_order(len(y_all), cfg.train.seed, 1)[:args.steps].tolist()
    print(f"{args.run}: loss {args.loss}, angles {args.angles}, teacher soft targets at "
          f"T={t}: mean top probability "
          f"{F.softmax(soft / t, 1).max(1).values.mean().item():.3f}")
    student.train()
    for step, i in enumerate(order):
        s, y = student(x_all[i:i + 1]), y_all[i:i + 1]
        # The product's losses (what fit trains with); the two terms only for printing.
        loss = kd(s, y, soft[i:i + 1]) if args.loss == "kd" else cross_entropy(s, y, None)
        with torch.no_grad():
            ce = F.cross_entropy(s, y)
            kl = F.kl_div(F.log_softmax(s[:, :task.num_classes] / t, 1),
                          F.softmax(soft[i:i + 1] / t, 1), reduction="batchmean")
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 150 == 0 or step == len(order) - 1:
            student.eval()
            with torch.no_grad():
                theta = student.circuit_input(x_all[:400])
                logits = student(x_all[:400])[:, :task.num_classes]
                acc = (logits.argmax(1) == y_all[:400]).float().mean().item()
            student.train()
            print(f"step {step:5d}: CE {ce.item():.3f}  KL {kl.item():.3f}  "
                  f"mean |theta| {theta.abs().mean():.3f}  at |theta|>3 "
                  f"{(theta.abs() > 3).float().mean():.2f}  spread over images "
                  f"{theta.std(0).mean():.3f}  accuracy {acc:.3f}")


if __name__ == "__main__":
    main()
