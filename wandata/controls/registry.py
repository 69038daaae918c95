"""Control extractors found by name: the built-ins, plus any a package registers under the
entry point group ``wandata.controls``::

    [project.entry-points."wandata.controls"]
    pose = "my_package.pose:PoseExtractor"

The target is a ``wandata.controls.base.Extractor`` subclass, or a function
``fn(rgb, **options) -> rgb`` applied to each frame (RGB uint8, same size out).
"""
from __future__ import annotations

import functools
from typing import Any

from wandata.controls.base import ControlError, Extractor
from wandata.plugins import Registry

ENTRY_POINT_GROUP = "wandata.controls"

BUILTINS = {
    "canny": "wandata.controls.canny:CannyExtractor",
    "depth": "wandata.controls.depth:DepthExtractor",
}

_REGISTRY = Registry(ENTRY_POINT_GROUP, BUILTINS, "control extractor", ControlError)


def available() -> tuple[str, ...]:
    """Every extractor name: the built-ins, then the installed plugins'."""
    return tuple(_REGISTRY.available())


class FunctionExtractor(Extractor):
    """A plugin given as a function of one frame; its options are passed through as text."""

    def __init__(self, name: str, fn, options: dict[str, Any]):
        self.name, self._fn, self.opts = name, fn, dict(options)
        self.version = getattr(fn, "version", 1)

    def frame(self, rgb):
        return self._fn(rgb, **self.opts)


def make(name: str, options: dict[str, Any] | None = None) -> Extractor:
    """The extractor called ``name``, built with its ``KEY=VALUE`` options."""
    target = _REGISTRY.load(name)
    options = dict(options or {})
    if isinstance(target, type) and issubclass(target, Extractor):
        ext = target(**options)
    elif callable(target) and not isinstance(target, type):
        ext = FunctionExtractor(name, target, options)
    else:
        raise ControlError(f"control extractor {name!r} is registered as neither a "
                           "wandata.controls.Extractor subclass nor a function; fix the entry point in the "
                           "package that provides it")
    if not ext.name:
        ext.name = name
    return ext


@functools.lru_cache(maxsize=None)
def describe(name: str) -> dict:
    target = _REGISTRY.load(name)
    return dict(getattr(target, "options", {}) or {}) if isinstance(target, type) else {}
