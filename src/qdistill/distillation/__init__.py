"""A distillation run: the teacher resolved (built-in, cached, your own file or ONNX, or
a committed record), its soft targets on the student's images (soft_targets.py), the
student built and trained with the loss by the training loop, the run's metadata
(run.py: ``run_distill``), and a trained student loaded back (``load_student``)."""
