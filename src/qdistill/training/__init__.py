"""Training: the loop (fit.py: epochs, selection on validation, resume, divergence),
its checkpoints, multi-GPU data parallelism, epoch callbacks (TensorBoard), the
teacher's soft targets, the task a config builds (tasks.py) and a whole distillation
run (distill.py: teacher + student + loss -> a run directory)."""
