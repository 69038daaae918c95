"""Export formats found by name: the built-ins below, plus any that a package registers under
the Python entry point group ``wandata.exporters``::

    [project.entry-points."wandata.exporters"]
    mine = "my_package.module:MyExporter"

The target is a ``wandata.export.common.Exporter`` subclass (or an instance of one): it writes
the curated clips in its trainer's files and reads them back for ``wandata check``.
"""
from __future__ import annotations

from wandata.export.common import Exporter, ExportError
from wandata.plugins import Registry

ENTRY_POINT_GROUP = "wandata.exporters"

# Built-ins: their order is the order the command line lists them in.
BUILTINS = {
    "csv": "wandata.export.diffsynth:Csv",
    "json": "wandata.export.diffsynth:Json",
    "jsonl": "wandata.export.diffsynth:Jsonl",
    "musubi": "wandata.export.musubi:Musubi",
    "diffusion-pipe": "wandata.export.diffusion_pipe:DiffusionPipe",
}
FORMATS = tuple(BUILTINS)


_REGISTRY = Registry(ENTRY_POINT_GROUP, BUILTINS, "format", ExportError)


def available() -> tuple[str, ...]:
    """Every format name: the built-ins, then the installed plugins'."""
    return tuple(_REGISTRY.available())


def load(name: str) -> Exporter:
    """The format called ``name``."""
    target = _REGISTRY.load(name)
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
