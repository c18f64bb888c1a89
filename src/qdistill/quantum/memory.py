"""Memory guard for batched statevectors.

A batch of ``B`` statevectors on ``n`` qubits holds ``B * 2**n`` complex amplitudes, so
memory doubles with every qubit: 30 qubits at batch 1 in complex64 is 8 GiB, 40 qubits
is 8 TiB. Allocating such a tensor does not fail cleanly (the process is killed by the
OOM killer, or CUDA raises deep inside autograd), so every place that creates a state
calls :func:`check_statevector_memory` first and raises a ``ValueError`` that says how
many GiB the state needs and what the limit is.

The limit covers *one* copy of the state. Training keeps several copies alive
(autograd saves the input of every gate application; the fused layers keep about one
per chunk), so a state that barely passes the guard can still run out of memory during
``backward``: leave a margin of roughly ``4 * n_layers`` copies for training.
"""

from __future__ import annotations

import os

import torch

__all__ = [
    "GIB",
    "available_memory_bytes",
    "check_statevector_memory",
    "statevector_bytes",
]

GIB = 1024**3
# Below this size the check is skipped: it cannot fail on any machine that runs torch,
# and reading /proc/meminfo on every forward pass would cost more than the simulation.
_ALWAYS_OK_BYTES = 64 * 1024**2
# Fraction of the currently free CUDA memory a single state may take by default.
CUDA_FREE_FRACTION = 0.8


def statevector_bytes(n_qubits: int, batch: int = 1, dtype: torch.dtype = torch.complex64) -> int:
    """Bytes for ``batch`` states of ``n_qubits`` qubits: ``batch * 2**n * itemsize``."""
    if n_qubits < 0 or batch < 0:
        raise ValueError(f"n_qubits and batch must be >= 0, got {n_qubits} and {batch}")
    itemsize = torch.empty((), dtype=dtype).element_size()
    return int(batch) * (1 << int(n_qubits)) * itemsize


def available_memory_bytes(device: torch.device | str | None = None) -> int:
    """Memory a new state may use on ``device``.

    CPU: ``MemAvailable`` from ``/proc/meminfo`` (free + reclaimable cache); where that
    file does not exist, free physical pages from ``os.sysconf``. CUDA: 80% of the free
    memory reported by ``torch.cuda.mem_get_info`` (the caching allocator and autograd
    need the rest).
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(CUDA_FREE_FRACTION * free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - exotic platforms
        return 2**62  # unknown: do not block


def check_statevector_memory(
    n_qubits: int,
    batch: int = 1,
    dtype: torch.dtype = torch.complex64,
    device: torch.device | str | None = None,
    limit_bytes: int | None = None,
) -> int:
    """Raise ``ValueError`` if one batch of statevectors would exceed the memory limit.

    Args:
        n_qubits: number of qubits.
        batch: number of statevectors held at once.
        dtype: complex dtype of the state (complex64: 8 bytes, complex128: 16 bytes).
        device: where the state will live (decides which memory is asked about).
        limit_bytes: explicit limit; default :func:`available_memory_bytes`.

    Returns:
        The number of bytes the state needs.
    """
    need = statevector_bytes(n_qubits, batch, dtype)
    if limit_bytes is None and need <= _ALWAYS_OK_BYTES:
        return need
    limit = available_memory_bytes(device) if limit_bytes is None else int(limit_bytes)
    if need > limit:
        what = "the given limit" if limit_bytes is not None else f"available on {device or 'cpu'}"
        raise ValueError(
            f"A statevector of {n_qubits} qubits x batch {batch} in {dtype} needs "
            f"{need / GIB:.3g} GiB, more than the {limit / GIB:.3g} GiB {what}. "
            "Use fewer qubits or a smaller batch (training needs several such copies)."
        )
    return need
