"""Training any model: the loop (fit.py: epochs, selection on validation,
divergence), a run between epochs (resume.py: checkpoints, resume, the files it ends
with), evaluation, multi-GPU data parallelism, epoch callbacks (TensorBoard) and the
task a config builds (tasks.py). A distillation run is one level up:
:mod:`qdistill.distillation`."""
