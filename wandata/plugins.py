"""Things found by name: the built-ins, plus any that a package registers under an entry point.

Captioners, shot detectors, export formats and engines are all extended the same way: a
package lists its class in its own ``pyproject.toml``::

    [project.entry-points."wandata.detectors"]
    mine = "my_package.module:MyDetector"

and, once installed, ``mine`` is a valid name wherever wandata takes one. Each family keeps a
``Registry`` of its own (``caption/registry.py``, ``detect/registry.py``, ``export/registry.py``,
``engine/__init__.py``); this module is what they share.
"""
from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any


class Registry:
    """``builtins`` maps name -> "module:attribute". They are listed in code as well as in
    pyproject.toml because an editable install made before an entry point was added does not
    see it; and a third party cannot silently replace a built-in."""

    def __init__(self, group: str, builtins: dict[str, str], kind: str, error: type[Exception] = ValueError):
        self.group, self.builtins, self.kind, self.error = group, dict(builtins), kind, error

    def entry_points(self) -> dict:
        return {ep.name: ep for ep in entry_points(group=self.group)}

    def available(self) -> dict[str, str]:
        """Every name -> its "module:attribute" target: the built-ins in their order, then the
        installed plugins' by name."""
        found = dict(self.builtins)
        for name, ep in sorted(self.entry_points().items()):
            found.setdefault(name, ep.value)
        return found

    def load(self, name: str) -> Any:
        """The class (or function) registered under ``name``; ``self.error`` saying what to do if
        there is none or it does not import."""
        if name in self.builtins:
            module, _, attr = self.builtins[name].partition(":")
            return getattr(importlib.import_module(module), attr)
        ep = self.entry_points().get(name)
        if ep is None:
            raise self.error(
                f"unknown {self.kind} {name!r}; choose from {', '.join(self.available())}. Third-party "
                f"{self.kind}s register under the Python entry point group {self.group!r}: is the package "
                "that provides it installed in this environment?")
        try:
            return ep.load()
        except Exception as e:  # noqa: BLE001 - any import failure means the plugin is unusable
            raise self.error(f"{self.kind} {name!r} is registered as {ep.value!r} but could not be imported "
                             f"({type(e).__name__}: {e}); reinstall the package that provides it") from e
