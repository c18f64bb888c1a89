"""Datasets for qdistill: MNIST, Fashion-MNIST, CIFAR-10 and scikit-learn's 8x8 digits.

Typical use::

    from qdistill.data import make_task
    task = make_task("mnist", "0-5", train_per_class=150, test_per_class=150)  # the paper's
    x = task.train.float_images()  # (900, 1, 28, 28) in [0, 1]

Files, one job each: ``core`` (types, catalog, cache_dir), ``idx`` (IDX format + MD5),
``safe_pickle`` (restricted unpickler), ``sources`` (MNIST/Fashion lookup chain),
``cache`` (.npy cache), ``download`` (verified downloads), ``cifar``, ``digits``,
``raw`` (load_raw, dataset_info, in-memory cache), ``tasks`` (class subsets and splits).

Environment: ``QDISTILL_DATA_DIR`` (default data directory), ``QDISTILL_CACHE_DIR``
(default ``$XDG_CACHE_HOME/qdistill`` or ``~/.cache/qdistill``), ``QDISTILL_OFFLINE=1``
(never download unless ``download=True``).
"""

from __future__ import annotations

from .core import DATASETS, DataError, ImageSet, RawDataset, cache_dir
from .raw import clear_memory_cache, dataset_info, load_raw
from .tasks import Task, make_task, parse_classes

__all__ = [
    "DATASETS",
    "DataError",
    "ImageSet",
    "RawDataset",
    "Task",
    "cache_dir",
    "clear_memory_cache",
    "dataset_info",
    "load_raw",
    "make_task",
    "parse_classes",
]
