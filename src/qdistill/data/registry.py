"""The dataset table: every name ``--dataset`` accepts, and how a dataset string resolves.

``resolve(dataset)`` turns what a user wrote (``--dataset``, ``DataConfig.dataset``, the
first argument of ``make_task`` / ``load_raw`` / ``dataset_info``) into a loader, in
this order:

1. a built-in name or alias in :data:`LOADERS` / :data:`ALIASES` (case and surrounding
   spaces ignored): ``mnist``, ``fashion-mnist``, ``cifar10``, ``digits``. Names win:
   a directory called ``mnist`` in the working directory is read as a folder only when
   written as a path (``./mnist``);
2. a path whose name ends in a suffix of :data:`FILE_LOADERS` (``.npz``, any case): that
   file (see ``own.py``: keys ``x_train y_train x_test y_test``, optional
   ``class_names`` and ``layout``);
3. an existing directory: an image folder (see ``folder.py``:
   ``DIR/train/CLASS/*.png|jpg|jpeg|bmp`` and ``DIR/test/CLASS/...``);
4. anything else is a DataError listing the names and the two file forms (a string that
   looks like a path says that nothing is there).

A ``pathlib.Path`` (any ``os.PathLike``) is always taken as a path. Python users can
also pass a :class:`RawDataset` (from ``from_arrays``, ``from_dataset`` or ``load_raw``)
instead of a string; that needs no table entry. File datasets keep the string as written
as their name (it is what run configs record); caches never trust a name or a path:
teacher caches are keyed on ``Task.fingerprint()``, the content of the data used.

Adding a built-in dataset (one new file plus one table entry)
-------------------------------------------------------------
1. Write ``src/qdistill/data/<name>.py`` with one loader::

       def load_<name>(directory: Path | None, origin: str, allow_download: bool) -> LoadedArrays

   ``directory`` is ``--data-dir`` / ``$QDISTILL_DATA_DIR`` (None when neither is
   given; ``origin`` says which, for messages), ``allow_download`` is False under
   ``QDISTILL_OFFLINE=1``. Return ``LoadedArrays(name, arrays, class_names, source,
   checksums, sources_tried)`` with ``arrays`` = ``train_images`` / ``test_images``
   (N, C, H, W) uint8 0..255 (or float32 in [0, 1]) and ``train_labels`` /
   ``test_labels`` (N,) int64 in 0..K-1, K = len(class_names).
   ``own.check_arrays(...)`` validates and converts arrays in any layout the file
   datasets accept. Raise :class:`DataError` with a one-line message that says what to
   do (the CLI prints it and exits with status 2).
2. Add ``"<name>": load_<name>`` to :data:`LOADERS` below (and spellings people type
   to :data:`ALIASES`). ``--dataset <name>``, ``qdistill data info <name>``, class
   subsets, per-class limits and the validation split then work as for the others;
   decoded arrays are memoised per process by ``raw.load_arrays``.

A new *file format* is one new file plus one :data:`FILE_LOADERS` entry: suffix ->
``loader(path: Path) -> LoadedArrays``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .cifar import load_cifar10
from .core import DataError, LoadedArrays
from .digits import load_digits
from .folder import IMAGE_SUFFIXES, load_image_folder
from .own import load_npz
from .sources import load_idx_dataset

Loader = Callable[[Path | None, str, bool], LoadedArrays]
FileLoader = Callable[[Path], LoadedArrays]


def _idx(name: str) -> Loader:
    def load(directory: Path | None, origin: str, allow_download: bool) -> LoadedArrays:
        return load_idx_dataset(name, directory, origin, allow_download)
    load.__name__ = load.__qualname__ = f"load_{name.replace('-', '_')}"
    return load


def _cifar10(directory: Path | None, origin: str, allow_download: bool) -> LoadedArrays:
    del allow_download  # no download for CIFAR-10
    return load_cifar10(directory, origin)


# THE table of built-in datasets: name -> loader (see the recipe above).
LOADERS: dict[str, Loader] = {
    "mnist": _idx("mnist"),
    "fashion-mnist": _idx("fashion-mnist"),
    "cifar10": _cifar10,
    "digits": load_digits,
}

# Spellings people type; every public entry point maps them to the canonical name.
ALIASES: dict[str, str] = {
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
    "cifar-10": "cifar10",
    "cifar_10": "cifar10",
}

# File datasets by suffix (lower case); a directory is an image folder.
FILE_LOADERS: dict[str, FileLoader] = {
    ".npz": load_npz,
}

DATASETS: tuple[str, ...] = tuple(LOADERS)

FILE_FORMS = (f"a FILE.npz (x_train, y_train, x_test, y_test) or an image folder DIR "
              f"(DIR/train/CLASS/*{'|'.join(IMAGE_SUFFIXES)}, DIR/test/CLASS/...)")


@dataclass(frozen=True)
class Resolved:
    """What a dataset string names: a built-in (``path`` None, ``name`` canonical) or a
    file dataset (``name`` as written, ``path`` where it is, ``file_loader``)."""

    name: str
    path: Path | None = None
    file_loader: FileLoader | None = None

    @property
    def loader(self) -> Loader:
        return LOADERS[self.name]


def canonical_name(name: str) -> str:
    """Map a user-typed built-in name to one of :data:`DATASETS`, or raise listing them."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in LOADERS:
        raise DataError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}, or "
                        f"{FILE_FORMS}")
    return key


def is_builtin(name: object) -> bool:
    """Whether ``name`` is a built-in dataset name or alias (not a path)."""
    if not isinstance(name, str):
        return False
    key = name.strip().lower()
    return ALIASES.get(key, key) in LOADERS


def resolve(dataset: str | os.PathLike[str]) -> Resolved:
    """Resolve a dataset string (see the module docstring for the order)."""
    as_path = isinstance(dataset, os.PathLike)
    text = os.fspath(dataset) if as_path else dataset
    if not isinstance(text, str):
        raise DataError(f"a dataset is a name or a path, got {type(dataset).__name__} "
                        f"{dataset!r}; valid: {', '.join(DATASETS)}, or {FILE_FORMS}")
    if not as_path and is_builtin(text):
        return Resolved(canonical_name(text))
    if not text.strip():
        raise DataError(f"empty dataset name; valid: {', '.join(DATASETS)}, or {FILE_FORMS}")
    path = Path(text).expanduser()
    for suffix, loader in FILE_LOADERS.items():
        if path.name.lower().endswith(suffix):
            return Resolved(text, path, loader)
    if path.is_dir():
        return Resolved(text, path, load_image_folder)
    if path.exists():
        raise DataError(f"dataset {text}: a file dataset must end in "
                        f"{' or '.join(FILE_LOADERS)}; valid: {FILE_FORMS}")
    if as_path or os.sep in text or "/" in text or text.startswith("."):
        raise DataError(f"dataset {text}: no such file or directory; give "
                        f"{FILE_FORMS}, or one of {', '.join(DATASETS)}")
    raise DataError(f"unknown dataset {text!r}; valid: {', '.join(DATASETS)}, or "
                    f"{FILE_FORMS}")


def dataset_label(dataset: object) -> str:
    """A short label safe in a file name: the canonical name of a built-in, the file or
    folder name of a file dataset (``/data/my set.npz`` -> ``my_set.npz``), the ``name``
    of a RawDataset. For run-directory names only: caches key on content, not on this."""
    if isinstance(dataset, str | os.PathLike):
        text = os.fspath(dataset)
        if not isinstance(dataset, os.PathLike) and is_builtin(text):
            return canonical_name(text)
        label = Path(text.rstrip("/" + os.sep)).name or "dataset"
    else:
        label = str(getattr(dataset, "name", "dataset"))
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label).strip(".")
    return safe or "dataset"
