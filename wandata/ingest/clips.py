"""The clip rows of one source: one ``ClipRecord`` per planned window and per too-short shot.

The streaming pass (``stream.ClipMaker``) leaves one ``WindowOutcome`` per window it planned:
its scores, the quality verdict, and what became of its encode. The rows are read off these
records, one at a time; times come from the source's timeline, never frame counts times a
nominal rate.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from wandata import quality
from wandata.dataset.records import DROPPED, FAILED, ClipRecord, SourceRecord
from wandata.ingest.windows import Window
from wandata.media.bucket import Fit
from wandata.media.verify import Decoded
from wandata.settings import Settings


@dataclass
class WindowOutcome:
    """Everything the pass learnt about one planned window."""
    window: Window
    scores: quality.Scores
    code: str = ""                 # the quality filter's reason code when it drops the window
    drop: str = ""                 # ... and its message; "" when the window is kept
    flags: list[str] = field(default_factory=list)   # failed tests of disabled filters
    error: tuple[str, str] | None = None             # (reason code, message): not written
    decoded: Decoded | None = None                   # the written clip, as verification decoded it
    problem: str = ""                                # what verification found wrong; "" if nothing


@dataclass
class ShortShot:
    """A shot too short for one window: it gets a dropped row of its own."""
    shot_index: int
    shot: tuple[int, int]          # grid frames, inclusive
    reason: str
    code: str = "shot_too_short"


def clip_rows(src: SourceRecord, settings: Settings, fit: Fit, made, dataset: Path,
              clip_path: Callable[[Window], Path], dry_run: bool) -> list[ClipRecord]:
    """The rows of ``made`` (``stream.Result``), in shot and window order. A written clip that
    failed verification is deleted here: its row says why."""
    origin = made.timeline.times[0]
    rows = [_window_row(src, settings, fit, made, o, origin, dataset, clip_path, dry_run)
            for o in made.outcomes]
    for d in made.dropped:
        c = _record(src, settings, fit, d.shot_index, -1, d.shot, origin)
        c.set(DROPPED, d.code, d.reason)
        rows.append(c)
    rows.sort(key=lambda c: (c.shot_index, c.window_index))
    return rows


def _window_row(src, settings, fit, made, o: WindowOutcome, origin: float, dataset: Path,
                clip_path, dry_run: bool) -> ClipRecord:
    w, fps = o.window, settings.fps
    c = _record(src, settings, fit, w.shot_index, w.window_index, made.shots[w.shot_index], origin)
    c.start_s, c.end_s = origin + w.start / fps, origin + (w.start + w.n) / fps
    c.src_frames = [made.timeline.grid_src[j] for j in w.frames]
    c.path = clip_path(w).relative_to(dataset).as_posix()
    c.flags = o.flags
    quality.copy_scores(o.scores, c)
    if o.drop:
        c.set(DROPPED, o.code, o.drop)
        c.path = ""
    elif dry_run:
        pass  # would be written
    elif o.error:
        c.set(FAILED, *o.error)
    else:
        d = o.decoded
        c.verified_frames, c.verified_fps = d.frames, d.fps
        c.verified_size = f"{d.width}x{d.height}"
        c.decoded_digest = d.digest
        if o.problem:
            c.set(FAILED, "verify_failed", problem=o.problem)
            clip_path(w).unlink(missing_ok=True)
    return c


def _record(src, settings, fit, shot_index, window_index, shot, origin) -> ClipRecord:
    a, b = shot
    wtag = f"w{window_index:02d}" if window_index >= 0 else "dropped"
    return ClipRecord(
        clip_id=f"{src.source_id[:12]}-s{shot_index:03d}-{wtag}",
        source_id=src.source_id, source_path=src.path, shot_index=shot_index,
        window_index=window_index, shot_start_s=origin + a / settings.fps,
        shot_end_s=origin + (b + 1) / settings.fps,
        num_frames=settings.frames, fps=settings.fps, bucket=fit.name, width=fit.width,
        height=fit.height, orientation=fit.orientation, scale=float(fit.scale),
        upscaled=fit.scale > 1.0, settings_fingerprint=settings.fingerprint())
