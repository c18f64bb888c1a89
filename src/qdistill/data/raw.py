"""``load_raw`` and ``dataset_info``: one entry point per dataset, memoised per process.

A dataset is a built-in name, a file dataset's path or a :class:`RawDataset` object;
``registry.resolve`` says which loader reads it (the table is in registry.py).
The decoded arrays of each (dataset, data dir with the size/mtime of its data files,
download allowed, cache dir) are kept in a small in-process LRU (4 entries: MNIST +
Fashion-MNIST + CIFAR-10 + digits is ~400 MB), so building several tasks from one
dataset decodes it once; file datasets have their own LRU of 4, keyed by the resolved
path and the size/mtime/inode of every file under it. Those arrays are marked
read-only and never handed out: ``load_raw`` returns fresh tensor copies (~30 ms for
MNIST), so no caller can corrupt what the next caller gets.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import registry
from .cifar import META_FILE, TEST_BATCH, TRAIN_BATCHES
from .core import (
    ENV_DATA_DIR,
    ENV_OFFLINE,
    IDX_FILES,
    DataError,
    LoadedArrays,
    RawDataset,
    cache_dir,
)
from .own import loaded_from_raw
from .registry import DATASETS
from .sources import TORCHVISION_DIRS

# What the public entry points accept as a dataset.
Dataset = str | os.PathLike[str] | RawDataset

MEMORY_CACHE_SIZE = 4


def resolve_data_dir(data_dir: str | Path | None) -> tuple[Path | None, str]:
    """(directory, where it came from): the argument, else $QDISTILL_DATA_DIR, else None.

    A directory that was named but does not exist is a DataError (a typo should not
    silently fall through to another source).
    """
    if data_dir is not None and str(data_dir) != "":
        path, origin = Path(data_dir).expanduser(), "data_dir argument"
    elif os.environ.get(ENV_DATA_DIR):
        path, origin = Path(os.environ[ENV_DATA_DIR]).expanduser(), f"${ENV_DATA_DIR}"
    else:
        return None, f"no data_dir argument and ${ENV_DATA_DIR} not set"
    if not path.is_dir():
        raise DataError(f"data directory {path} ({origin}) does not exist or is not a "
                        "directory; fix the path")
    return path.resolve(), origin


def download_allowed(download: bool | None) -> bool:
    """``download`` if given, else True unless $QDISTILL_OFFLINE is "1"."""
    if download is not None:
        return bool(download)
    return os.environ.get(ENV_OFFLINE, "") != "1"


def load_arrays(
    name: Dataset, data_dir: str | Path | None = None, download: bool | None = None
) -> LoadedArrays:
    """Internal: the memoised, read-only numpy arrays of a dataset (do not modify).

    ``name``: a built-in name, a file dataset's path or a RawDataset (see registry.py).
    """
    if isinstance(name, RawDataset):
        _no_data_dir(data_dir, f"dataset {name.name!r} (a RawDataset object)")
        return loaded_from_raw(name)
    found = registry.resolve(name)
    if found.path is not None:
        _no_data_dir(data_dir, f"dataset {found.name}")
        path = found.path.resolve()
        loaded = _load_file_cached(path, found.file_loader, str(cache_dir()),
                                   _tree_signature(path))
        return dataclasses.replace(loaded, name=found.name)  # the name as written
    directory, origin = resolve_data_dir(data_dir)
    return _load_cached(found.name, directory, origin, download_allowed(download),
                        str(cache_dir()), _files_signature(directory))


def _no_data_dir(data_dir: str | Path | None, what: str) -> None:
    if data_dir is not None and str(data_dir) != "":
        raise DataError(f"{what} is read from its own path, but a data directory was given "
                        f"({data_dir}); --data-dir is for mnist, fashion-mnist and cifar10: "
                        "drop it")


def _tree_signature(path: Path) -> tuple[tuple[str, int, int, int], ...]:
    """(relative path, size, mtime, inode) of a file, or of every file under a directory:
    part of the in-memory cache's key, so edited files are read again."""
    signature = []
    if path.is_dir():
        for parent, dirs, files in os.walk(path):
            dirs.sort()
            for file_name in sorted(files):
                full = Path(parent) / file_name
                try:
                    st = full.stat()
                except OSError:
                    continue
                signature.append((str(full.relative_to(path)), st.st_size, st.st_mtime_ns,
                                  st.st_ino))
    else:
        try:
            st = path.stat()
        except OSError:
            return ()
        signature.append(("", st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(signature)


@functools.lru_cache(maxsize=MEMORY_CACHE_SIZE)
def _load_file_cached(
    path: Path, loader: registry.FileLoader, cache_root: str,
    files: tuple[tuple[str, int, int, int], ...],
) -> LoadedArrays:
    del cache_root, files  # part of the key only (see _load_cached)
    return _read_only(loader(path))


def _files_signature(directory: Path | None) -> tuple[tuple[str, int, int, int], ...]:
    """(path, size, mtime, inode) of every data file a directory could serve: part of
    the in-memory cache's key, so files replaced on disk are read again, not served
    stale from memory (~70 stat calls)."""
    if directory is None:
        return ()
    names = [*IDX_FILES, *(f"{f}.gz" for f in IDX_FILES), *TRAIN_BATCHES, TEST_BATCH,
             META_FILE]
    subdirs = ["", *DATASETS, *(f"{d}/raw" for d in TORCHVISION_DIRS.values()),
               "cifar-10-batches-py"]
    signature = []
    for sub in subdirs:
        for file_name in names:
            try:
                st = (directory / sub / file_name).stat()
            except OSError:
                continue
            signature.append((f"{sub}/{file_name}", st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(signature)


@functools.lru_cache(maxsize=MEMORY_CACHE_SIZE)
def _load_cached(
    name: str, directory: Path | None, origin: str, allow_download: bool, cache_root: str,
    files: tuple[tuple[str, int, int, int], ...],
) -> LoadedArrays:
    # cache_root and files are part of the key only: a changed $QDISTILL_CACHE_DIR or a
    # data file replaced on disk must not reuse what is in memory.
    del cache_root, files
    return _read_only(registry.LOADERS[name](directory, origin, allow_download))


def _read_only(loaded: LoadedArrays) -> LoadedArrays:
    for key, array in loaded.arrays.items():
        array = np.ascontiguousarray(array)
        array.flags.writeable = False
        loaded.arrays[key] = array
    return loaded


def clear_memory_cache() -> None:
    """Forget the per-process decoded datasets (tests; or after changing files on disk)."""
    _load_cached.cache_clear()
    _load_file_cached.cache_clear()


def load_raw(
    name: Dataset, data_dir: str | Path | None = None, *, download: bool | None = None
) -> RawDataset:
    """A whole dataset with its original labels; tensors are the caller's own copies.

    ``name``: a built-in name, a ``.npz`` file, an image folder or a RawDataset (see
    registry.py). ``data_dir`` (else $QDISTILL_DATA_DIR) is tried first; see
    ``qdistill.data.sources`` for the lookup order of MNIST / Fashion-MNIST.
    ``download``: None = allowed unless $QDISTILL_OFFLINE=1.
    """
    loaded = load_arrays(name, data_dir, download)
    a = loaded.arrays
    return RawDataset(
        name=loaded.name,
        train_images=torch.from_numpy(a["train_images"].copy()),
        train_labels=torch.from_numpy(a["train_labels"].astype(np.int64)),
        test_images=torch.from_numpy(a["test_images"].copy()),
        test_labels=torch.from_numpy(a["test_labels"].astype(np.int64)),
        class_names=list(loaded.class_names),
        source=loaded.source,
        checksums=dict(loaded.checksums),
        sources_tried=[dict(t) for t in loaded.sources_tried],
    )


def dataset_info(name: Dataset, data_dir: str | Path | None = None) -> dict[str, Any]:
    """What ``qdistill data info NAME`` prints: JSON-able, never raises for a missing set.

    ``name``: a built-in name, a ``.npz`` file, an image folder or a RawDataset. Keys:
    dataset, available, source, sources_tried (in lookup order, with status), checksums,
    class_names, image_shape, image_dtype, train/test sizes and counts per class; or,
    when unavailable, ``error`` with the one-line reason. An unknown name raises.
    """
    if isinstance(name, RawDataset):
        key = name.name
    else:
        found = registry.resolve(name)  # unknown names raise, listing the valid ones
        key = found.name
    try:
        loaded = load_arrays(name, data_dir)
    except DataError as exc:
        return {"dataset": key, "available": False, "error": str(exc),
                "sources_tried": exc.sources_tried}
    a = loaded.arrays
    k = len(loaded.class_names)
    return {
        "dataset": key,
        "available": True,
        "source": loaded.source,
        "sources_tried": [dict(t) for t in loaded.sources_tried],
        "checksums": dict(loaded.checksums),
        "class_names": list(loaded.class_names),
        "image_shape": list(a["train_images"].shape[1:]),
        "image_dtype": str(a["train_images"].dtype),
        "train_size": int(len(a["train_labels"])),
        "test_size": int(len(a["test_labels"])),
        "train_class_counts": np.bincount(a["train_labels"], minlength=k).tolist(),
        "test_class_counts": np.bincount(a["test_labels"], minlength=k).tolist(),
        "cache_dir": str(cache_dir()),
    }
