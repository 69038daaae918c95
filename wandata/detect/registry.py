"""Shot detectors found by name: the built-ins, plus any a package registers under the entry
point group ``wandata.detectors``::

    [project.entry-points."wandata.detectors"]
    mine = "my_package.module:MyDetector"

The target is a detector class (``base.Detector``). ``auto`` is no detector of its own: it
picks ``transnetv2`` on a GPU and ``cascade`` on a CPU.
"""
from __future__ import annotations

import inspect
from typing import Any

from wandata.detect.base import Detector
from wandata.detect.transnet import resolve_device
from wandata.plugins import Registry

ENTRY_POINT_GROUP = "wandata.detectors"

BUILTINS = {
    "transnetv2": "wandata.detect.transnet:TransNetV2Detector",
    "cascade": "wandata.detect.cascade:CascadeDetector",
    "adaptive": "wandata.detect.adaptive:AdaptiveDetector",
    "none": "wandata.detect.base:NoDetector",
}
AUTO = "auto"


_REGISTRY = Registry(ENTRY_POINT_GROUP, BUILTINS, "detector")


def available() -> dict[str, str]:
    """Every detector name mapped to its 'module:attribute' target (``auto`` aside)."""
    return _REGISTRY.available()


def load(name: str) -> Any:
    """The detector class registered under ``name``."""
    return _REGISTRY.load(name)


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
