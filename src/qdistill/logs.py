"""qdistill's progress lines are ``logging`` records of the ``qdistill`` logger (one
logger per module: ``qdistill.training.fit``, ``qdistill.experiments.runner`` ...).

A library does not configure logging: in Python nothing is shown until you ask, e.g.

    import logging
    logging.basicConfig(level=logging.INFO)     # every epoch, teacher and grid line

The command line shows INFO lines as plain text (``console``): on stdout, or on stderr
when stdout holds ``--json`` output. ``quiet()`` silences them for a block: the runs a
grid trains in worker processes, a run prepared for lockstep training.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

ROOT = "qdistill"


class _Console(logging.Handler):
    """Each record as its message alone, on the stream current at the time of the record
    (so pytest's capture and a redirected stdout see it); warnings on stderr, prefixed
    ``qdistill: warning:``."""

    def __init__(self, stderr: bool):
        super().__init__()
        self.stderr = stderr

    def emit(self, record: logging.LogRecord) -> None:
        text, stderr = record.getMessage(), self.stderr
        if record.levelno >= logging.WARNING:  # never mixed into a command's output
            text, stderr = f"qdistill: warning: {text}", True
        print(text, file=sys.stderr if stderr else sys.stdout, flush=True)


@contextlib.contextmanager
def console(stderr: bool = False, level: int = logging.INFO) -> Iterator[None]:
    """Show qdistill's records down to ``level`` as plain lines for a block (the CLI)."""
    logger = logging.getLogger(ROOT)
    handler, old = _Console(stderr), logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """No INFO lines from qdistill for a block (warnings still show)."""
    logger = logging.getLogger(ROOT)
    old = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(old)
