"""The one exception type a user sees.

Every error that a user can cause (bad data, bad config, wrong checkpoint, unknown
name) is a :class:`QdistillError` with a one-line message that says what is wrong and
what to do. The CLI prints that line and exits with status 2; `--debug` shows the
traceback. Anything else escaping is a bug in qdistill.
"""

from __future__ import annotations

from collections.abc import Iterable


class QdistillError(Exception):
    """A user-facing error: the message alone must be enough to act on."""


class ConfigError(QdistillError):
    """A config file or option is wrong (unknown key, wrong type, invalid value).

    ``key`` is the dotted config key at fault (``"train.epochs"``) when there is one: the
    command line turns it into the option's own name (``--epochs``).
    """

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


class CheckpointError(QdistillError):
    """A checkpoint is missing, broken, or belongs to another model or task."""


def unknown_name(kind: str, name: str, valid: Iterable[str]) -> QdistillError:
    """The error for an unknown teacher/student/dataset/... name, listing the valid ones."""
    return QdistillError(f"unknown {kind} {name!r}; valid: {', '.join(sorted(valid))}")
