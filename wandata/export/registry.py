"""Export formats found by name: the built-ins below, plus any that a package registers under
the Python entry point group ``wandata.exporters``::

    [project.entry-points."wandata.exporters"]
    mine = "my_package.module:MyExporter"

The target is a ``wandata.export.common.Exporter`` subclass (or an instance of one): it writes
the curated clips in its trainer's files and reads them back for ``wandata check``.
"""
from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from wandata.export.common import Exporter, ExportError

ENTRY_POINT_GROUP = "wandata.exporters"

# Built-ins resolve even when the installed package metadata is stale (an editable install
# made before an entry point was added), so they are listed here as well as in pyproject.toml.
# Their order is the order the command line lists them in.
BUILTINS = {
    "csv": "wandata.export.diffsynth:Csv",
    "json": "wandata.export.diffsynth:Json",
    "jsonl": "wandata.export.diffsynth:Jsonl",
    "musubi": "wandata.export.musubi:Musubi",
    "diffusion-pipe": "wandata.export.diffusion_pipe:DiffusionPipe",
}
FORMATS = tuple(BUILTINS)


def _entry_points() -> dict:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available() -> tuple[str, ...]:
    """Every format name: the built-ins, then the installed plugins'."""
    # A third party cannot silently replace a built-in.
    return FORMATS + tuple(sorted(set(_entry_points()) - set(BUILTINS)))


def load(name: str) -> Exporter:
    """The format called ``name``."""
    if name in BUILTINS:
        module, _, attr = BUILTINS[name].partition(":")
        target = getattr(importlib.import_module(module), attr)
    else:
        ep = _entry_points().get(name)
        if ep is None:
            raise ExportError(f"unknown format {name!r}; choose from {', '.join(available())}")
        try:
            target = ep.load()
        except Exception as e:  # noqa: BLE001 - any import failure means the plugin is unusable
            raise ExportError(f"export format {name!r} is registered as {ep.value!r} but could not be "
                              f"imported ({type(e).__name__}: {e}); reinstall the package that provides it") from e
    exporter = target() if isinstance(target, type) else target
    if not isinstance(exporter, Exporter):
        raise ExportError(f"export format {name!r} is not a wandata.export.common.Exporter; fix the entry point "
                          "in the package that provides it")
    if not exporter.name:
        exporter.name = name
    return exporter


def installed() -> list[Exporter]:
    """Every format that loads (a broken plugin is left out: it is reported when named)."""
    out = []
    for name in available():
        try:
            out.append(load(name))
        except ExportError:
            continue
    return out
