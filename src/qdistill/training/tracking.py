"""Experiment tracking: epoch callbacks for :func:`qdistill.training.fit.fit`.

A callback is any function taking one epoch's metrics (a dict: ``epoch``,
``train_loss``, ``train_acc``, ``val_acc``, ``test_acc``, ``seconds``, ``best_epoch``,
``run``); ``fit`` calls each at the end of every epoch, after the checkpoint::

    seen = []
    run_distill(cfg, "runs/x", callbacks=[seen.append])
    qdistill distill ... --tensorboard runs/tb        # TensorBoard scalars, one per metric

Every run also writes ``metrics.jsonl`` itself; callbacks are for live views and other
trackers (wandb, MLflow: wrap their ``log`` call in a function).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..errors import QdistillError


class TensorBoard:
    """Write each epoch's numeric metrics as TensorBoard scalars under ``log_dir``
    (``tensorboard --logdir LOG_DIR``). Needs the optional ``tensorboard`` package
    (``pip install 'qdistill[tensorboard]'``)."""

    def __init__(self, log_dir: str | Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch's writer imports the tensorboard package
            raise QdistillError("--tensorboard needs the tensorboard package: "
                                "pip install 'qdistill[tensorboard]'") from None
        self.log_dir = Path(log_dir)
        self._make = SummaryWriter
        self.writer: Any = None  # made at the first epoch: a refused run writes nothing

    def __call__(self, metrics: dict[str, Any]) -> None:
        if self.writer is None:
            self.writer = self._make(str(self.log_dir))
        step = int(metrics["epoch"])
        for key, value in metrics.items():
            if key != "epoch" and isinstance(value, int | float) and math.isfinite(value):
                self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
