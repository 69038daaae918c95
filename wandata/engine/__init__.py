"""Execution engines: where and how the per-source job runs (``--engine``).

* ``local`` (``engine/local.py``): sources in order in this process, or ``workers`` processes.
* ``ray`` (``engine/ray.py``): one Ray task per source on a Ray cluster.

``engine/base.py`` says what an engine is. A new one is one file plus one registration: a
built-in in ``BUILTINS`` (and pyproject's entry points), a third-party one under the entry
point group ``wandata.engines``.
"""
from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from wandata.engine.base import EngineError
from wandata.engine.local import LocalEngine
from wandata.engine.ray import RayEngine

ENTRY_POINT_GROUP = "wandata.engines"
BUILTINS = {"local": "wandata.engine.local:LocalEngine", "ray": "wandata.engine.ray:RayEngine"}


def available() -> dict[str, str]:
    """Every engine name mapped to its 'module:attribute' target, built-ins first."""
    found = dict(BUILTINS)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)  # a third party cannot silently replace a built-in
    return found


ENGINES = tuple(available())


def make_engine(name: str = "local", workers: int = 1, ray_address: str | None = None):
    target = available().get(name)
    if target is None:
        raise EngineError(f"engine {name!r}: choose one of {', '.join(available())}")
    module, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except Exception as e:  # noqa: BLE001 - any import failure means the plugin is unusable
        raise EngineError(f"engine {name!r} is registered as {target!r} but could not be imported "
                          f"({type(e).__name__}: {e}); reinstall the package that provides it") from e
    return cls.from_options(workers, ray_address)


__all__ = ["BUILTINS", "ENGINES", "ENTRY_POINT_GROUP", "EngineError", "LocalEngine", "RayEngine",
           "available", "make_engine"]
