"""The captioner interface: what a captioner receives (``ClipInput``), returns (``Result``)
and declares (``Option``), and the ``Captioner`` base class every built-in extends."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from wandata.dataset.records import ClipRecord

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
