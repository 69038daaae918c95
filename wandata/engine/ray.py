"""The Ray engine: one Ray task per source on a Ray cluster (``--engine ray``).

Ray is imported only when the engine is chosen or run: it is an optional extra.
"""
from __future__ import annotations

import os
import socket
from typing import Iterator

from wandata.engine.base import EngineError, Failed, Job


# Errors worth another attempt on another worker: I/O on a shared filesystem (a stale NFS
# handle, a timeout, a mount that is not there yet). Anything else raised by the stages is
# deterministic for that file, so a retry would fail the same way and only cost time.
TRANSIENT = (OSError,)
MAX_RETRIES = 3
# TransNetV2 needs well under 1 GB and a small share of a GPU's time next to the
# decoding and encoding of the same task, so several sources share one GPU.
GPU_SHARE = 0.25
# How long a HOST:PORT address may take to accept a connection. ray.init itself retries an
# address where nothing listens for minutes, which looks like a hung command.
REACH_TIMEOUT_S = 5.0


def _run_job(job: Job, path: str):
    """The task: the job's result and the id of the node that ran it (``RayEngine.placement``)."""
    import ray

    return ray.get_runtime_context().get_node_id(), job(path)


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
        # path -> id of the Ray node whose attempt returned it (a retried source: the last one).
        self.placement: dict[str, str] = {}

    @classmethod
    def from_options(cls, workers: int = 1, address: str | None = None) -> "RayEngine":
        """``workers`` is refused by the CLI (the cluster decides how many tasks run at once)."""
        _import_ray()  # fail before any work, not at the first source
        check_reachable(address if address is not None else os.environ.get("RAY_ADDRESS"))
        return cls(address)

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
                        self.placement[path], result = ray.get(done[0])
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
        except (ConnectionError, getattr(ray.exceptions, "AuthenticationError", ConnectionError)) as e:
            raise EngineError(f"cannot join the Ray cluster at {self.address!r}: {e}. If the cluster uses "
                              "token authentication, set RAY_AUTH_MODE=token and give this machine the "
                              "cluster's token (RAY_AUTH_TOKEN or ~/.ray/auth_token); see docs/ray.md") from None
        return True


def check_reachable(address: str | None) -> None:
    """A ``HOST:PORT`` address (the head's GCS port) must accept a TCP connection within a few
    seconds; ``auto``, ``ray://`` and no address are left to Ray."""
    if not address or address == "auto" or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise EngineError(f"--ray-address {address!r} is not HOST:PORT (the head's port, 6379 unless "
                          "`ray start --head --port` said otherwise), auto or ray://HOST:10001")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=REACH_TIMEOUT_S).close()
    except OSError as e:
        raise EngineError(f"cannot reach the Ray cluster at {address!r} ({e}): is the head running "
                          f"(`ray start --head --port {port}` on {host}) and the port open from this "
                          "machine? See docs/ray.md") from None


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

