"""Execution engines: where and how the per-source job runs.

An engine knows nothing about the stages. It is given ``job(path) -> result``
(``pipeline.process_source`` with the settings bound) and ``failed(path, error)
-> result`` (the record of a source that raised), and yields one result per path
as each finishes, in completion order. Results always come back to the caller,
which alone writes the manifest: no worker ever touches it, so there is nothing
for workers to race on, and a driver that dies loses only unfinished sources.

* ``LocalEngine``: sources in order in this process, or ``workers`` processes.
* ``RayEngine``: one Ray task per source on a Ray cluster (``--engine ray``).
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable, Iterator, TypeVar

R = TypeVar("R")
Job = Callable[..., R]            # job(path, on_progress=None) -> R
Failed = Callable[[str, BaseException], R]
ENGINES = ("local", "ray")


class EngineError(RuntimeError):
    """The engine cannot start (e.g. Ray is not installed or unreachable); the message says how to fix it."""


def _guarded(job: Job, failed: Failed, path: str, on_progress=None):
    """One bad file must not end the run: its error becomes its result."""
    try:
        return job(path, on_progress=on_progress)
    except Exception as e:  # noqa: BLE001 - KeyboardInterrupt is not an Exception and still stops the run
        return failed(path, e)


class LocalEngine:
    name = "local"

    def __init__(self, workers: int = 1):
        self.workers = workers

    def results(self, job: Job, failed: Failed, paths: list[str], gpu: bool | None = None,
                progress_for: Callable[[str], Callable[[float], None]] | None = None) -> Iterator:
        """``progress_for(path)`` gives a within-file progress callback; only the inline path
        can call it, since a callback cannot cross into a pool process. ``gpu`` is for
        schedulers; here the detector finds this machine's GPU by itself."""
        if self.workers <= 1 or len(paths) <= 1:
            for p in paths:
                yield _guarded(job, failed, p, progress_for(p) if progress_for else None)
            return
        # spawn, not fork: the parent may hold torch/OpenMP threads, which fork does not copy safely.
        with ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_guarded, job, failed, p) for p in paths]
            try:
                for fut in as_completed(futures):
                    yield fut.result()
            finally:
                # If the caller stops early (Ctrl-C, an error), don't start sources nobody will record.
                for fut in futures:
                    fut.cancel()


# Errors worth another attempt on another worker: I/O on a shared filesystem (a stale NFS
# handle, a timeout, a mount that is not there yet). Anything else raised by the stages is
# deterministic for that file, so a retry would fail the same way and only cost time.
TRANSIENT = (OSError,)
MAX_RETRIES = 3
# TransNetV2 needs well under 1 GB and a small share of a GPU's time next to the
# decoding and encoding of the same task, so several sources share one GPU.
GPU_SHARE = 0.25


def _run_job(job: Job, path: str):
    return job(path)


class RayEngine:
    """One Ray task per source. Ray retries a task whose worker died (``max_retries``) and one
    that raised a transient error (``retry_exceptions``); what still fails becomes a failed record.

    ``address``: None starts a local Ray runtime (or joins the one ``RAY_ADDRESS`` names),
    ``"auto"`` joins the running cluster, ``"ray://host:10001"`` a remote one through Ray Client.
    If this process is already connected (``ray.init`` was called), that connection is used.
    """
    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_task: float = 2, max_retries: int = MAX_RETRIES):
        self.address = address
        # Logical CPUs: one source decodes on one thread and encodes two clips at a time.
        self.cpus_per_task = cpus_per_task
        self.max_retries = max_retries

    def results(self, job: Job, failed: Failed, paths: list[str], gpu: bool | None = None,
                progress_for=None) -> Iterator:
        if not paths:  # a rerun with everything done should not start a Ray runtime
            return
        ray = _import_ray()
        started = self._connect(ray)
        try:
            if gpu is None:  # "if there is one": ask the cluster, not this (driver) machine
                gpu = ray.cluster_resources().get("GPU", 0) > 0
            task = ray.remote(_run_job).options(
                num_cpus=self.cpus_per_task, num_gpus=GPU_SHARE if gpu else 0,
                max_retries=self.max_retries, retry_exceptions=list(TRANSIENT))
            job_ref = ray.put(job)  # the settings travel once, not once per task
            pending = {task.remote(job_ref, p): p for p in paths}
            try:
                while pending:
                    done, _ = ray.wait(list(pending), num_returns=1)
                    path = pending.pop(done[0])
                    try:
                        result = ray.get(done[0])
                    except ray.exceptions.RayError as e:
                        result = failed(path, _cause(e))
                    yield result
            finally:
                for ref in pending:  # the caller stopped early: free the cluster
                    ray.cancel(ref)
        finally:
            if started:
                ray.shutdown()

    def _connect(self, ray) -> bool:
        """Connect unless already connected; True if this call did (and must shut down)."""
        if ray.is_initialized():
            return False
        try:
            ray.init(address=self.address)
        except ConnectionError as e:
            raise EngineError(f"cannot reach the Ray cluster at {self.address!r}: {e}") from None
        return True


def _cause(e: BaseException) -> BaseException:
    """The stage's own exception inside Ray's wrapper; Ray's own error (a worker crash) as is."""
    cause = getattr(e, "cause", None)
    return cause if isinstance(cause, BaseException) else e


def _import_ray():
    try:
        import ray
    except ImportError:
        raise EngineError("--engine ray needs Ray: pip install 'wandata[ray]'") from None
    return ray


def make_engine(name: str = "local", workers: int = 1, ray_address: str | None = None):
    if name == "local":
        if ray_address:
            raise EngineError("--ray-address only applies to --engine ray")
        return LocalEngine(workers)
    if name == "ray":
        _import_ray()  # fail before any work, not at the first source
        return RayEngine(ray_address)
    raise EngineError(f"engine {name!r}: choose one of {', '.join(ENGINES)}")
