"""Captioning hooks: one small interface, many captioners, found by name.

A captioner turns clips into text. It receives a batch of ``ClipInput`` and
returns one ``Result`` per clip, in order, each with the text or the reason it
has none. A per-clip failure is a ``Result`` with ``error`` set, never an
exception, so one bad clip cannot end a run over thousands.

Captioners are found by name: the built-ins below, plus any that a package
registers under the Python entry point group ``wandata.captioners``::

    [project.entry-points."wandata.captioners"]
    mine = "my_package.module:MyCaptioner"

The target is either a ``Captioner`` subclass (constructed with the user's
``key=value`` options) or a plain function ``fn(clip: ClipInput, **options) -> str``.
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable

from wandata.dataset.records import ClipRecord

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


class CaptionerError(Exception):
    """The captioner cannot run at all (bad name, bad option, missing program).

    Problems with a single clip are ``Result.error`` instead."""


@dataclass
class ClipInput:
    """One clip as a captioner sees it: its manifest row and where its file is."""
    record: ClipRecord
    dataset: Path

    @property
    def clip_id(self) -> str:
        return self.record.clip_id

    @property
    def path(self) -> Path:
        return self.dataset / self.record.path

    def fields(self, extra: dict | None = None) -> dict[str, Any]:
        """Values for format strings: every manifest column plus a few derived ones."""
        r = self.record
        d = {k: v for k, v in dataclasses.asdict(r).items() if not isinstance(v, list)}
        src, clip = Path(r.source_path), Path(r.path)
        d.update(source_name=src.name, source_stem=src.stem, clip_name=clip.name, clip_stem=clip.stem,
                 duration_s=round(r.num_frames / r.fps, 3) if r.fps else 0.0,
                 dataset=str(self.dataset), trigger="")
        d.update(extra or {})
        return d

    def frames(self, k: int, max_side: int = 0):
        """K RGB frames (numpy HxWx3) spread evenly across the clip."""
        from wandata.caption.frames import sample_frames
        return sample_frames(self.path, k, max_side=max_side, num_frames=self.record.verified_frames)


@dataclass
class Result:
    text: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass(frozen=True)
class Option:
    """One ``key=value`` option a captioner takes; ``type`` converts the command-line string."""
    default: Any
    help: str
    type: Callable[[str], Any] = str


def as_bool(value: str) -> bool:
    v = str(value).strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{value!r} is not a yes/no value (use true or false)")


class Captioner:
    """Base class for captioners. Subclasses set ``name`` and ``options`` and
    implement ``caption_batch``; ``self.opts`` holds the converted options."""

    name: str = ""
    options: dict[str, Option] = {}
    batch_size: int = 1  # clips handed to caption_batch at once (and saved together)

    def __init__(self, **opts: Any):
        self.opts = resolve_options(self.name or type(self).__name__, self.options, opts)

    def caption_batch(self, items: list[ClipInput]) -> list[Result]:
        raise NotImplementedError

    def label(self) -> str:
        """What the manifest records as the producer of each caption."""
        return self.name

    def close(self) -> None:
        """Release what the captioner holds (a model, a connection pool)."""


def resolve_options(name: str, spec: dict[str, Option], given: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(given) - set(spec))
    if unknown:
        known = ", ".join(sorted(spec)) or "none"
        raise CaptionerError(f"captioner {name!r} has no option {', '.join(map(repr, unknown))}; "
                             f"it takes: {known} (see `wandata captions list`)")
    out = {}
    for key, opt in spec.items():
        if key not in given:
            out[key] = opt.default
            continue
        value = given[key]
        try:
            out[key] = opt.type(value) if isinstance(value, str) and opt.type is not str else value
        except (TypeError, ValueError) as e:
            raise CaptionerError(f"captioner {name!r}: option {key}={value!r} is invalid ({e}); "
                                 f"{key} is: {opt.help}") from None
    return out


class FunctionCaptioner(Captioner):
    """Adapts a plain ``fn(clip, **options) -> str`` registered by a third party."""

    def __init__(self, name: str, fn: Callable[..., str], opts: dict[str, Any]):
        self.name, self.fn, self.opts = name, fn, dict(opts)

    def caption_batch(self, items: list[ClipInput]) -> list[Result]:
        out = []
        for item in items:
            try:
                out.append(Result(text=str(self.fn(item, **self.opts) or "")))
            except Exception as e:  # noqa: BLE001 - a third-party failure on one clip is that clip's error
                out.append(Result(error=f"{self.name} raised {type(e).__name__}: {e}"))
        return out


# ---------------------------------------------------------------- registry


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


from wandata.caption.run import CaptionSummary, caption_clips  # noqa: E402 - needs the names above

__all__ = ["BUILTINS", "ENTRY_POINT_GROUP", "CaptionSummary", "Captioner", "CaptionerError", "ClipInput",
           "FunctionCaptioner", "Option", "Result", "as_bool", "available", "caption_clips", "load", "make"]
