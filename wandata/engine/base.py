"""What every engine shares: the job it is given, its error, and the guard around one job.

An engine knows nothing about the stages. It is given ``job(path) -> result``
(``ingest.source.process_source`` with the settings bound) and ``failed(path, error)
-> result`` (the record of a source that raised), and yields one result per path
as each finishes, in completion order. Results always come back to the caller,
which alone writes the manifest: no worker ever touches it, so there is nothing
for workers to race on, and a driver that dies loses only unfinished sources.

An engine is a class with ``name``, ``from_options(workers, address)`` (refuse options
that do not apply to it, fail early if it cannot start) and ``results(job, failed, paths,
gpu=None, progress_for=None)``; ``wandata.engine`` registers it by name.
"""
from __future__ import annotations

from typing import Callable, TypeVar

R = TypeVar("R")
Job = Callable[..., R]            # job(path, on_progress=None) -> R
Failed = Callable[[str, BaseException], R]


class EngineError(RuntimeError):
    """The engine cannot start (e.g. Ray is not installed or unreachable); the message says how to fix it."""


def guarded(job: Job, failed: Failed, path: str, on_progress=None):
    """One bad file must not end the run: its error becomes its result."""
    try:
        return job(path, on_progress=on_progress)
    except Exception as e:  # noqa: BLE001 - KeyboardInterrupt is not an Exception and still stops the run
        return failed(path, e)
