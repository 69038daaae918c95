"""Captioners found by name: the built-ins, plus any a package registers under the entry point
group ``wandata.captioners`` (see the package docstring)."""
from __future__ import annotations

from typing import Any

from wandata.caption.base import Captioner, CaptionerError, FunctionCaptioner, Option
from wandata.plugins import Registry

ENTRY_POINT_GROUP = "wandata.captioners"

BUILTINS = {
    "sidecar": "wandata.caption.sidecar:SidecarCaptioner",
    "template": "wandata.caption.template:TemplateCaptioner",
    "command": "wandata.caption.command:CommandCaptioner",
    "openai": "wandata.caption.openai_compat:OpenAICaptioner",
    "transformers": "wandata.caption.transformers_vlm:TransformersCaptioner",
}


_REGISTRY = Registry(ENTRY_POINT_GROUP, BUILTINS, "captioner", CaptionerError)


def available() -> dict[str, str]:
    """Every captioner name mapped to its 'module:attribute' target, by name."""
    return dict(sorted(_REGISTRY.available().items()))


def load(name: str) -> Any:
    """The class or function registered under ``name``."""
    return _REGISTRY.load(name)


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
