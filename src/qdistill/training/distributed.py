"""Data-parallel training with ``torchrun`` and DistributedDataParallel.

    torchrun --nproc-per-node 2 -m qdistill teacher train --arch lenet --dataset mnist
    torchrun --nproc-per-node 4 -m qdistill distill --student paper-v2 --qubits 8 ...

``torchrun`` sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; the CLI then calls
:func:`init_from_env` and :func:`qdistill.training.fit.fit` does the rest:

- ``--batch-size`` stays the *global* batch: each of the N processes takes B/N images
  of every step. The shard comes from :class:`EpochSampler`, a DistributedSampler whose
  epoch order is the single-process order, so rank r gets images r, r+N, r+2N, ... of
  each global batch and the averaged gradient is the single-process gradient (up to
  float summation order) — ``tests/test_ddp.py`` checks 2 gloo processes against one.
- Seeds are offset per rank (``seed + rank``) for anything random inside the step
  (dropout, shot sampling); the initial weights are rank 0's (DDP broadcasts them).
- Only rank 0 logs and writes checkpoints, metrics and caches; every rank reads the
  last checkpoint to resume, so the output directory must be on a filesystem all
  ranks see.
- The frozen teacher is never wrapped in DDP: its logits are computed once, before
  training, and each rank indexes its own shard of them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from ..errors import QdistillError


def env_world_size() -> int:
    """WORLD_SIZE as set by torchrun (1 when not launched by it)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise QdistillError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not an integer") \
            from None


def init_from_env(device: str = "auto") -> bool:
    """Join the process group torchrun describes; returns True when distributed.

    Backend: NCCL when training on CUDA, gloo on CPU. Does nothing for a single
    process or when the group already exists.
    """
    if env_world_size() <= 1:
        return False
    if dist.is_initialized():
        return True
    for var in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise QdistillError(f"WORLD_SIZE > 1 but {var} is not set; launch with torchrun")
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local_rank())
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return True


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """True on the process that logs and writes files (rank 0, or the only one)."""
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_sum(*tensors: torch.Tensor) -> None:
    """Sum tensors over ranks, in place (no-op for one process)."""
    if is_distributed():
        for t in tensors:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)


def gather_rng_states() -> list[torch.Tensor]:
    """Every rank's CPU torch RNG state (rank 0 saves them all, so a resumed DDP run
    continues each rank's random stream, e.g. its shot sampling)."""
    state = torch.get_rng_state()
    if not is_distributed():
        return [state]
    states = [None] * world_size()
    dist.all_gather_object(states, state)
    return [s for s in states if s is not None]


def local_batch_size(global_batch: int) -> int:
    n = world_size()
    if global_batch % n:
        raise QdistillError(f"--batch-size {global_batch} is the global batch and must be a "
                            f"multiple of the {n} processes")
    return global_batch // n


class EpochSampler(DistributedSampler):
    """A DistributedSampler over ``n`` images whose epoch order is ``order_fn(epoch)``.

    With one process it yields exactly ``order_fn(epoch)``; with N it gives rank r the
    positions r, r+N, ... of that order (padded by wrapping round, as DistributedSampler
    does, to a multiple of N), so that step s of rank r holds positions r, r+N, ... of
    the single-process batch s when each rank uses batch B/N. Call ``set_epoch`` first.
    """

    def __init__(self, n: int, order_fn, num_replicas: int = 1, rank: int = 0):
        super().__init__(range(n), num_replicas=num_replicas, rank=rank, shuffle=True,
                         drop_last=False)
        self.n, self.order_fn = n, order_fn
        self.total_size = math.ceil(n / num_replicas) * num_replicas

    def indices(self) -> torch.Tensor:
        order = self.order_fn(self.epoch)
        pad = self.total_size - self.n
        if pad:
            order = torch.cat([order, order[:pad]])
        return order[self.rank:self.total_size:self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())
