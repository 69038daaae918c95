"""Captioners found by name: the built-ins, plus any a package registers under the entry point
group ``wandata.captioners`` (see the package docstring)."""
from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from wandata.caption.base import Captioner, CaptionerError, FunctionCaptioner, Option

ENTRY_POINT_GROUP = "wandata.captioners"

# Built-ins resolve even when the installed package metadata is stale (an
# editable install made before an entry point was added), so they are listed
# here as well as in pyproject.toml.
BUILTINS = {
    "sidecar": "wandata.caption.sidecar:SidecarCaptioner",
    "template": "wandata.caption.template:TemplateCaptioner",
    "command": "wandata.caption.command:CommandCaptioner",
    "openai": "wandata.caption.openai_compat:OpenAICaptioner",
    "transformers": "wandata.caption.transformers_vlm:TransformersCaptioner",
}


def _entry_points() -> dict:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available() -> dict[str, str]:
    """Every captioner name mapped to its 'module:attribute' target."""
    found = {name: ep.value for name, ep in _entry_points().items()}
    found.update(BUILTINS)  # a third party cannot silently replace a built-in
    return dict(sorted(found.items()))


def load(name: str) -> Any:
    """The class or function registered under ``name``."""
    if name in BUILTINS:
        module, _, attr = BUILTINS[name].partition(":")
        return getattr(importlib.import_module(module), attr)
    ep = _entry_points().get(name)
    if ep is None:
        raise CaptionerError(
            f"no captioner named {name!r}; available: {', '.join(available())}. Third-party "
            f"captioners register under the Python entry point group {ENTRY_POINT_GROUP!r}; "
            "is the package that provides it installed in this environment?")
    try:
        return ep.load()
    except Exception as e:  # noqa: BLE001 - any import failure means the plugin is unusable
        raise CaptionerError(f"captioner {name!r} is registered as {ep.value!r} but could not be "
                             f"imported ({type(e).__name__}: {e}); reinstall the package that provides it") from e


def make(name: str, options: dict[str, Any] | None = None) -> Captioner:
    """Build the captioner called ``name`` with ``key=value`` options."""
    options = dict(options or {})
    target = load(name)
    if isinstance(target, type):
        cap = target(**options)
    elif callable(target):
        cap = FunctionCaptioner(name, target, options)
    else:
        raise CaptionerError(f"captioner {name!r} is registered as something that is neither a class "
                             "nor a function; fix the entry point in the package that provides it")
    if not callable(getattr(cap, "caption_batch", None)):
        raise CaptionerError(f"captioner {name!r} ({type(cap).__name__}) has no caption_batch method; "
                             "subclass wandata.caption.Captioner")
    if not getattr(cap, "name", ""):
        cap.name = name
    return cap


def describe_options(name: str) -> dict[str, Option]:
    target = load(name)
    return dict(getattr(target, "options", {}) or {}) if isinstance(target, type) else {}
