"""Execution engines: where and how the per-source job runs (``--engine``).

* ``local`` (``engine/local.py``): sources in order in this process, or ``workers`` processes.
* ``ray`` (``engine/ray.py``): one Ray task per source on a Ray cluster.

``engine/base.py`` says what an engine is. A new one is one file plus one registration: a
built-in in ``BUILTINS`` (and pyproject's entry points), a third-party one under the entry
point group ``wandata.engines``.
"""
from __future__ import annotations

from wandata.engine.base import EngineError
from wandata.engine.local import LocalEngine
from wandata.engine.ray import RayEngine
from wandata.plugins import Registry

ENTRY_POINT_GROUP = "wandata.engines"
BUILTINS = {"local": "wandata.engine.local:LocalEngine", "ray": "wandata.engine.ray:RayEngine"}


_REGISTRY = Registry(ENTRY_POINT_GROUP, BUILTINS, "engine", EngineError)


def available() -> dict[str, str]:
    """Every engine name mapped to its 'module:attribute' target, built-ins first."""
    return _REGISTRY.available()


ENGINES = tuple(available())


def make_engine(name: str = "local", workers: int = 1, ray_address: str | None = None):
    return _REGISTRY.load(name).from_options(workers, ray_address)


__all__ = ["BUILTINS", "ENGINES", "ENTRY_POINT_GROUP", "EngineError", "LocalEngine", "RayEngine",
           "available", "make_engine"]
