"""The task a config asks for: train/validation/test (and a transfer set) built from a
``DataConfig``, rebuilt for a finished run, and the cache key of a config.

A config's key (``config_key``) ignores options that do not change what is learned
(device, evaluation batch size, where the data lives) and holds the content of the
data instead (``Task.fingerprint()``), so caches never mix two datasets of one name.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch

from ..config import DataConfig, to_dict
from ..data import ImageSet, Task, make_task
from ..data.augment import augmented_views
from ..data.tasks import UNLABELLED
from ..errors import ConfigError, QdistillError

# Options that do not change what is learned stay out of cache keys. Where the data
# came from (data_dir) is replaced by what it is: the task's data fingerprint.
_NOT_IN_KEY = {"device", "eval_batch_size", "data_dir"}


def build_task(data: DataConfig, seed: int = 0) -> Task:
    """The Task (train/val/test) a DataConfig describes; ``seed`` draws the val split."""
    kind, n = parse_transfer(data.transfer)
    task = make_task(
        data.dataset, data.classes, train_per_class=data.train_per_class,
        test_per_class=data.test_per_class, val_fraction=data.val_fraction,
        val_per_class=data.val_per_class, seed=seed, data_dir=data.data_dir,
        transfer_per_class=n if kind == "unlabelled" else None,
    )
    if kind == "augmented":  # K views of every labelled image, seeded by the run's seed
        assert isinstance(n, int)
        views = augmented_views(task.train.images, n, seed)
        task.transfer = ImageSet(views, torch.full((len(views),), UNLABELLED))
    return task


def parse_transfer(spec: str | None) -> tuple[str | None, int | str | None]:
    """``None`` -> (None, None); ``"unlabelled"`` -> ("unlabelled", "all");
    ``"unlabelled:500"`` -> ("unlabelled", 500); ``"augmented:4"`` -> ("augmented", 4)."""
    if spec is None:
        return None, None
    kind, _, n = (t.strip() for t in spec.partition(":"))
    count_ok = n.isdigit() and int(n) > 0
    if (kind == "unlabelled" and (not n or count_ok)) or (kind == "augmented" and count_ok):
        return kind, int(n) if n else "all"
    raise ConfigError(f"--transfer {spec!r}: give unlabelled, unlabelled:N (N more images "
                      "per class) or augmented:K (K views of each labelled image), N, K >= 1",
                      key="data.transfer")


def task_of_run(meta: dict[str, Any], data_dir: str | None = None) -> Task:
    """The task a finished run (teacher or student; its checkpoint metadata) trained on,
    rebuilt from its recorded config. Refused when the data found now is not the data
    of the run (its recorded ``data_fingerprint``), e.g. a ``--data-dir`` whose files
    were replaced since. ``data_dir``: evaluate on other data on purpose (not checked).
    """
    from ..config import from_dict

    data = dict(meta["config"]["data"])
    if data_dir is not None:
        data["data_dir"] = data_dir
    task = build_task(from_dict(DataConfig, data), meta["config"]["train"]["seed"])
    recorded = meta.get("data_fingerprint")
    if data_dir is None and recorded and task.fingerprint() != recorded:
        where = data["data_dir"] or "the built-in sources"
        raise QdistillError(
            f"the {data['dataset']} data found now ({where}) is not the data this run was "
            f"trained on (data_fingerprint {task.fingerprint()[:12]}, recorded "
            f"{recorded[:12]}); restore that data or pass the directory that holds it")
    return task


def config_key(cfg: Any, data_fingerprint: str | None = None) -> str:
    """A short stable hash of a config, ignoring options that do not change results,
    and of the data's content (``Task.fingerprint()``) when given."""
    def strip(d: Any) -> Any:
        if isinstance(d, dict):
            return {k: strip(v) for k, v in d.items() if k not in _NOT_IN_KEY}
        return d
    blob = json.dumps(strip(to_dict(cfg)), sort_keys=True)
    if data_fingerprint is not None:
        blob += f"|data:{data_fingerprint}"
    return hashlib.sha256(blob.encode()).hexdigest()[:12]
