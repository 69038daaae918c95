"""Shot detectors found by name: the built-ins, plus any a package registers under the entry
point group ``wandata.detectors``::

    [project.entry-points."wandata.detectors"]
    mine = "my_package.module:MyDetector"

The target is a detector class (``base.Detector``). ``auto`` is no detector of its own: it
picks ``transnetv2`` on a GPU and ``cascade`` on a CPU.
"""
from __future__ import annotations

import importlib
import inspect
from importlib.metadata import entry_points
from typing import Any

from wandata.detect.base import Detector
from wandata.detect.transnet import resolve_device

ENTRY_POINT_GROUP = "wandata.detectors"

# Built-ins resolve even when the installed package metadata is stale (an editable install
# made before an entry point was added), so they are listed here as well as in pyproject.toml.
BUILTINS = {
    "transnetv2": "wandata.detect.transnet:TransNetV2Detector",
    "cascade": "wandata.detect.cascade:CascadeDetector",
    "adaptive": "wandata.detect.adaptive:AdaptiveDetector",
    "none": "wandata.detect.base:NoDetector",
}
AUTO = "auto"


def _entry_points() -> dict:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available() -> dict[str, str]:
    """Every detector name mapped to its 'module:attribute' target (``auto`` aside)."""
    found = {name: ep.value for name, ep in _entry_points().items()}
    found.update(BUILTINS)  # a third party cannot silently replace a built-in
    return dict(sorted(found.items()))


def load(name: str) -> Any:
    """The detector class registered under ``name``."""
    if name in BUILTINS:
        module, _, attr = BUILTINS[name].partition(":")
        return getattr(importlib.import_module(module), attr)
    ep = _entry_points().get(name)
    if ep is None:
        raise ValueError(f"unknown detector {name!r}")
    return ep.load()


def make_detector(name: str, threshold: float = 0.5, device: str = "auto", fps: float = 16.0) -> Detector:
    """``auto``: TransNetV2 on every frame on a GPU; on a CPU the cascade (cheap frame
    differences, TransNetV2 only where they are unsure), which is several times faster."""
    if name == AUTO:
        device = resolve_device(device)
        name = "transnetv2" if device.startswith("cuda") else "cascade"
    cls = load(name)
    given = {"threshold": threshold, "device": device, "fps": fps}
    params = inspect.signature(cls).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        given = {k: v for k, v in given.items() if k in params}
    return cls(**given)
