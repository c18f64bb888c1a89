"""Datasets for qdistill: MNIST, Fashion-MNIST, CIFAR-10, scikit-learn's 8x8 digits, and
your own (a ``.npz`` file, an image folder, numpy arrays or a torch Dataset).

Typical use::

    from qdistill.data import from_arrays, make_task
    task = make_task("mnist", "0-5", train_per_class=150, test_per_class=150)  # the paper's
    x = task.train.float_images()  # (900, 1, 28, 28) in [0, 1]
    mine = make_task("my_data.npz", "0-2")            # or an image folder, or:
    mine = make_task(from_arrays(x_tr, y_tr, x_te, y_te, class_names=["a", "b", "c"]))

Files, one job each: ``registry`` (THE dataset table: name -> loader, and how a dataset
string resolves; the recipe for adding a dataset is its docstring), ``core`` (types,
catalog, cache_dir), ``idx`` (IDX format + MD5), ``safe_pickle`` (restricted
unpickler), ``sources`` (MNIST/Fashion lookup chain), ``cache`` (.npy cache),
``download`` (verified downloads), ``cifar``, ``digits``, ``own`` (.npz files,
...), ``in_memory`` (from_arrays, from_dataset), ``folder`` (image folders), ``raw`` (load_raw,
dataset_info, in-memory cache), ``tasks`` (class subsets and splits).

Environment: ``QDISTILL_DATA_DIR`` (default data directory), ``QDISTILL_CACHE_DIR``
(default ``$XDG_CACHE_HOME/qdistill`` or ``~/.cache/qdistill``), ``QDISTILL_OFFLINE=1``
(never download unless ``download=True``).
"""

from __future__ import annotations

from .core import DataError, ImageSet, RawDataset, cache_dir
from .in_memory import from_arrays, from_dataset
from .raw import clear_memory_cache, dataset_info, load_raw
from .registry import DATASETS, dataset_label, resolve
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
    "dataset_label",
    "from_arrays",
    "from_dataset",
    "load_raw",
    "make_task",
    "parse_classes",
    "resolve",
]
