"""Where a grid's student runs execute: a local process pool (default) or Ray tasks.

    qdistill reproduce paper-v1 --quick                        # local processes
    qdistill reproduce paper-v1 --executor ray                 # a local Ray instance
    qdistill reproduce paper-v1 --executor ray --address auto --out /shared/paper-v1

An executor takes the tasks' argument tuples and yields ``(task id, outcome or
exception)`` as each task ends: a task is one run (``runner._run_one``, its row) or
a lockstep group of runs (``runner._run_group``, their rows and one-line errors; see
``qdistill.lockstep``); ``reproduce.run_grid`` logs the rows and collects the failures,
whichever executor ran them. Every run resumes from ``OUT/runs/<run_id>/last.*``, so a Ray task
retried after its worker died continues after the last complete epoch. On a cluster,
``OUT`` (and ``$QDISTILL_CACHE_DIR``, where the teachers trained by the driver are
cached) must be on a filesystem every node sees at the same path.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from ..errors import QdistillError

# (run_id, setting, config dict, output directory, threads): runner._run_one's
# arguments; a lockstep group's: (group id, [(run_id, setting, config dict), ...],
# output directory, threads)
RunArgs = tuple[Any, ...]
RunFn = Callable[..., dict[str, Any]]
Outcome = tuple[str, dict[str, Any] | Exception]

EXECUTORS = ("local", "ray")
RAY_MISSING = "--executor ray needs Ray: pip install 'qdistill[ray]'"
# A Ray task whose worker process dies (killed, out of memory, node lost) is run again,
# up to this many times; it resumes from its last epoch checkpoint. Exceptions raised by
# the run itself (bad settings, a NaN loss) are not retried: they would happen again.
RAY_MAX_RETRIES = 3
# Variables a run reads (data/cache locations, offline mode, the native lockstep kernel),
# handed to the tasks on an existing cluster; a local Ray instance inherits this
# process's environment anyway.
FORWARDED_ENV = ("QDISTILL_CACHE_DIR", "QDISTILL_DATA_DIR", "QDISTILL_OFFLINE",
                 "QDISTILL_NATIVE")


class LocalExecutor:
    """``workers`` processes on this machine (in this process when ``workers`` is 1)."""

    def __init__(self, workers: int):
        self.workers = max(1, workers)

    def describe(self) -> str:
        return f"{self.workers} local worker(s)"

    def run(self, fn: RunFn, tasks: Sequence[RunArgs]) -> Iterator[Outcome]:
        if self.workers == 1:
            for args in tasks:
                try:
                    yield args[0], fn(*args)
                except QdistillError as exc:  # other errors stop the grid (with --debug)
                    yield args[0], exc
            return
        with ProcessPoolExecutor(self.workers) as pool:
            futures = {pool.submit(fn, *args): args[0] for args in tasks}
            for fut in as_completed(futures):
                try:
                    yield futures[fut], fut.result()
                except Exception as exc:  # keep the grid going; reported at the end
                    yield futures[fut], exc


class RayExecutor:
    """One Ray task per run, asking for ``num_cpus`` CPUs and ``num_gpus`` GPUs.

    Uses the Ray instance this process is already connected to, if any; otherwise starts
    a local one (``address`` None) or connects to ``address``, and disconnects at the end.
    """

    def __init__(self, num_cpus: int, num_gpus: int = 0, address: str | None = None,
                 max_retries: int = RAY_MAX_RETRIES):
        import_ray()  # fail now, before any teacher is trained
        self.num_cpus, self.num_gpus = num_cpus, num_gpus
        self.address, self.max_retries = address, max_retries

    def describe(self) -> str:
        where = f"the Ray cluster at {self.address}" if self.address else "Ray"
        gpus = f", {self.num_gpus} GPU" if self.num_gpus else ""
        return f"{where} ({self.num_cpus} CPU{gpus} per run)"

    def run(self, fn: RunFn, tasks: Sequence[RunArgs]) -> Iterator[Outcome]:
        ray = import_ray()
        with _connected(self.address):
            # A task asking for a GPU that no node has would wait forever (a cluster's
            # autoscaler may still add GPU nodes, so only this machine's instance is checked).
            if self.num_gpus and not self.address and not ray.cluster_resources().get("GPU"):
                raise QdistillError("--device cuda with --executor ray: the local Ray "
                                    "instance sees no GPU; use --device cpu")
            remote = ray.remote(fn).options(
                num_cpus=self.num_cpus, num_gpus=self.num_gpus,
                max_retries=self.max_retries, retry_exceptions=False)
            pending = {remote.remote(*args): args[0] for args in tasks}
            while pending:
                [ref], _ = ray.wait(list(pending), num_returns=1)
                run_id = pending.pop(ref)
                try:
                    yield run_id, ray.get(ref)
                except ray.exceptions.RayTaskError as exc:  # the run raised: its error
                    yield run_id, exc.cause if isinstance(exc.cause, Exception) else exc
                except ray.exceptions.RayError as exc:  # e.g. the worker died too often
                    yield run_id, exc


def usable_cpus() -> int:
    """CPUs this process may run on (respects taskset / container affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def make_executor(name: str, workers: int, threads: int, device: str = "cpu",
                  address: str | None = None) -> LocalExecutor | RayExecutor:
    """The executor ``--executor name`` asks for; ``threads``: CPU threads per run."""
    if name == "local":
        if address:
            raise QdistillError("--address is for --executor ray")
        return LocalExecutor(workers)
    if name == "ray":
        if device.startswith("cuda:"):
            raise QdistillError(f"--device {device} with --executor ray: use --device cuda "
                                "(Ray gives each run one GPU of its own)")
        return RayExecutor(num_cpus=threads, num_gpus=1 if device == "cuda" else 0,
                           address=address)
    raise QdistillError(f"unknown executor {name!r}; valid: {', '.join(EXECUTORS)}")


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise QdistillError(RAY_MISSING) from None
    return ray


def init_ray(address: str | None = None, num_cpus: int | None = None) -> str | None:
    """Connect to the cluster at ``address``, or start a local Ray instance with
    ``num_cpus`` CPUs (default: the usable cores) and no dashboard, its files in a new
    directory under the system temp dir. Returns that directory (None for a cluster)."""
    ray = import_ray()
    if address:
        env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
        try:
            ray.init(address=address, runtime_env={"env_vars": env} if env else None)
        except ConnectionError as exc:
            raise QdistillError(
                f"could not connect to the Ray cluster at {address} ({exc}); is it up "
                "(ray status)? A cluster with token authentication also needs "
                "RAY_AUTH_MODE=token here") from None
        return None

    temp_dir = tempfile.mkdtemp(prefix="qdistill-ray-", dir=tempfile.gettempdir())
    ray.init(num_cpus=num_cpus or usable_cpus(), include_dashboard=False,
             _temp_dir=temp_dir)
    return temp_dir


@contextlib.contextmanager
def _connected(address: str | None) -> Iterator[None]:
    """Ray connected for the duration: the existing connection, or one made and closed
    here (a local instance stops and its temp dir is removed)."""
    ray = import_ray()
    if ray.is_initialized():
        yield
        return
    temp_dir = init_ray(address)
    try:
        yield
    finally:
        ray.shutdown()
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)
