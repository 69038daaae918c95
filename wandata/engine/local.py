"""The local engine: sources in order in this process, or in ``workers`` processes."""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable, Iterator

from wandata.engine.base import EngineError, Failed, Job, guarded


class LocalEngine:
    name = "local"

    def __init__(self, workers: int = 1):
        self.workers = workers

    @classmethod
    def from_options(cls, workers: int = 1, address: str | None = None) -> "LocalEngine":
        if address:
            raise EngineError("--ray-address only applies to --engine ray")
        return cls(workers)

    def results(self, job: Job, failed: Failed, paths: list[str], gpu: bool | None = None,
                progress_for: Callable[[str], Callable[[float], None]] | None = None) -> Iterator:
        """``progress_for(path)`` gives a within-file progress callback; only the inline path
        can call it, since a callback cannot cross into a pool process. ``gpu`` is for
        schedulers; here the detector finds this machine's GPU by itself."""
        if self.workers <= 1 or len(paths) <= 1:
            for p in paths:
                yield guarded(job, failed, p, progress_for(p) if progress_for else None)
            return
        # spawn, not fork: the parent may hold torch/OpenMP threads, which fork does not copy safely.
        with ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(guarded, job, failed, p) for p in paths]
            try:
                for fut in as_completed(futures):
                    yield fut.result()
            finally:
                # If the caller stops early (Ctrl-C, an error), don't start sources nobody will record.
                for fut in futures:
                    fut.cancel()
