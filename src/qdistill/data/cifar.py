"""CIFAR-10 from the official "CIFAR-10 python version" directory (no offline package exists).

Layout: ``data_batch_1`` .. ``data_batch_5`` and ``test_batch`` (10,000 images each in
the official release), directly in the given directory or in its
``cifar-10-batches-py/`` (the tarball's top folder) or ``cifar10/`` subdirectory. Each
is a pickled dict with ``b"data"``: uint8 N x 3072 (the R, G, B planes of a 32x32 image,
row-major) and ``b"labels"``: N ints; ``batches.meta`` (optional) has
``b"label_names"``. Read with the restricted unpickler (encoding "bytes", as upstream
documents). No per-file hash is checked: the release publishes only the tarball's MD5.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .core import CLASS_NAMES, DataError, LoadedArrays
from .safe_pickle import safe_load

TRAIN_BATCHES: tuple[str, ...] = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META_FILE = "batches.meta"
NOT_CHECKED = "not checked: no published per-file hash used"
FIX = "re-extract cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html)"


def find_cifar_dir(directory: Path) -> Path | None:
    """The directory among ``<dir>/cifar-10-batches-py``, ``<dir>/cifar10``, ``<dir>`` that
    holds any batch file, or None."""
    for candidate in (directory / "cifar-10-batches-py", directory / "cifar10", directory):
        if any((candidate / f).is_file() for f in (*TRAIN_BATCHES, TEST_BATCH)):
            return candidate
    return None


def load_cifar10(directory: Path | None, origin: str) -> LoadedArrays:
    """Both splits of CIFAR-10 as uint8 (N,3,32,32) from ``directory``."""
    hint = "pass --data-dir DIR (or set QDISTILL_DATA_DIR) to the extracted cifar-10-batches-py"
    # The one source (no offline package or download is used for CIFAR-10).
    if directory is None:
        raise DataError(f"cifar10: no source has the data. Tried 1) directory ({origin}): "
                        f"skipped (CIFAR-10 has no other source); {hint}",
                        sources_tried=[{"source": f"directory ({origin})",
                                        "status": "skipped: not given"}])
    found = find_cifar_dir(directory)
    if found is None:
        raise DataError(f"cifar10: no data_batch_1..5 / test_batch in {directory} or its "
                        f"cifar-10-batches-py/ or cifar10/ (the one source tried; {origin}); "
                        f"{hint}",
                        sources_tried=[{"source": f"directory {directory} ({origin})",
                                        "status": "skipped: no CIFAR-10 batches"}])
    for file_name in (*TRAIN_BATCHES, TEST_BATCH):
        if not (found / file_name).is_file():
            raise DataError(f"{found / file_name}: missing CIFAR-10 batch; {FIX}")
    train = [_read_batch(found / f) for f in TRAIN_BATCHES]
    test_images, test_labels = _read_batch(found / TEST_BATCH)
    arrays = {
        "train_images": np.concatenate([x for x, _ in train]),
        "train_labels": np.concatenate([y for _, y in train]),
        "test_images": test_images,
        "test_labels": test_labels,
    }
    names = _class_names(found / META_FILE)
    for key in ("train_labels", "test_labels"):
        if arrays[key].size and (arrays[key].min() < 0 or arrays[key].max() >= len(names)):
            raise DataError(f"{found}: {key} outside 0..{len(names) - 1}; {FIX}")
    files = (*TRAIN_BATCHES, TEST_BATCH)
    tried = [{"source": f"directory {directory} ({origin})", "status": "used"}]
    return LoadedArrays("cifar10", arrays, names, f"CIFAR-10 python batches in {found}",
                        dict.fromkeys(files, NOT_CHECKED), tried)


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = _load_dict(path)
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise DataError(f"{path}: 'data' is not a uint8 N x 3072 array (got {shape}); {FIX}")
    labels_arr = np.asarray(labels, dtype=np.int64) if labels is not None else None
    if labels_arr is None or labels_arr.shape != (data.shape[0],):
        raise DataError(f"{path}: 'labels' missing or not {data.shape[0]} ints; {FIX}")
    return data.reshape(-1, 3, 32, 32), labels_arr


def _class_names(meta_path: Path) -> list[str]:
    if not meta_path.is_file():
        return list(CLASS_NAMES["cifar10"])
    names = _load_dict(meta_path).get("label_names")
    if not isinstance(names, list) or not names:
        raise DataError(f"{meta_path}: no 'label_names' list; delete it or {FIX}")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def _load_dict(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            obj = safe_load(f, where=str(path), encoding="bytes")
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc}); {FIX}") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: not a pickled dict; {FIX}")
    return {k.decode() if isinstance(k, bytes) else str(k): v for k, v in obj.items()}
