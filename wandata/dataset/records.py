"""Typed records that flow through the ingest chain and end as manifest rows.

One source file becomes a ``SourceRecord``; each planned window of one of its
shots becomes a ``ClipRecord``. Stages fill fields in; ``manifest`` stores them.
Times are seconds on the source's own timeline (presentation timestamps), never
frame numbers times a nominal fps, which are wrong for variable-frame-rate files.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
from dataclasses import dataclass, field

from wandata.dataset.reasons import Reason

KEPT, DROPPED, FAILED = "kept", "dropped", "failed"


@contextlib.contextmanager
def bulk():
    """Make many records (a million clips read from a manifest) with the cyclic garbage
    collector paused: records hold no reference cycles, and its passes over every object made
    so far were a third of the time. Restored on leaving (only if it was on)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class _Verdict:
    # No instance dict: the records below keep their fields in slots (a million clips are read
    # at once; a per-object dict was most of their memory).
    __slots__ = ()

    def set(self, status: str, code: str, reason: str | None = None, **figures) -> None:
        """Status, reason code (a ``dataset.reasons.Reason``) and the message for people, together.
        Without ``reason`` the message is the code's template filled with ``figures``, so that
        one wording lives in one place (``dataset/reasons.py``)."""
        if reason is None:
            reason = Reason(code).message(**figures)
        # Stored as the plain string: str() of a str-Enum member is "Reason.name", not its value.
        self.status, self.reason_code, self.reason = status, getattr(code, "value", code), reason


@dataclass(slots=True)
class SourceRecord(_Verdict):
    path: str
    source_id: str = ""          # first 16 hex digits of the content hash
    content_hash: str = ""       # blake2b of the file's bytes
    size_bytes: int = 0
    status: str = KEPT           # kept: clips were planned from it (see their own rows)
    reason: str = ""
    reason_code: str = ""        # a dataset.reasons.Reason; on a kept source a warning (truncated...)
    container: str = ""
    codec: str = ""
    pix_fmt: str = ""
    width: int = 0               # stored pixels
    height: int = 0
    rotation: int = 0            # clockwise degrees a player applies
    display_width: int = 0       # after rotation
    display_height: int = 0
    duration_s: float = 0.0
    fps: float = 0.0             # average frame rate
    vfr: bool = False
    num_frames: int = 0
    has_audio: bool = False
    shots: list[list[float]] = field(default_factory=list)  # [start_s, end_s) usable spans
    crop: list[int] = field(default_factory=list)  # black bars cut off: [x, y, w, h] displayed; [] none
    detector: str = ""
    settings_fingerprint: str = ""
    settings_json: str = ""
    timings_json: str = ""

    kind = "source"

    def row(self) -> dict:
        return {"kind": self.kind, **dataclasses.asdict(self)}


@dataclass(slots=True)
class ClipRecord(_Verdict):
    clip_id: str
    source_id: str
    source_path: str
    shot_index: int
    window_index: int
    shot_start_s: float
    shot_end_s: float
    start_s: float = 0.0         # time of the first output frame
    end_s: float = 0.0           # time just after the last output frame
    num_frames: int = 0
    fps: float = 0.0
    src_frames: list[int] = field(default_factory=list)  # source frame index per output frame
    bucket: str = ""
    width: int = 0
    height: int = 0
    orientation: str = ""
    scale: float = 0.0           # cover-scale factor applied to the source
    upscaled: bool = False
    path: str = ""               # relative to the dataset directory
    status: str = KEPT
    reason: str = ""
    reason_code: str = ""        # a dataset.reasons.Reason
    verified_frames: int = 0
    verified_fps: float = 0.0
    verified_size: str = ""
    decoded_digest: str = ""     # of the decoded pictures, from verify
    caption: str = ""
    captioner: str = ""
    settings_fingerprint: str = ""
    # Quality scores (wandata/quality/scores.py); -1 where not measured (a dropped short shot).
    motion: float = -1.0         # optical-flow speed, % of frame width per second
    sharpness: float = -1.0      # variance of the Laplacian of luma at 320 px width
    brightness: float = -1.0     # mean luma
    contrast: float = -1.0       # standard deviation of luma
    text: float = -1.0           # fraction of the frame covered by static text-like regions
    phash: list[str] = field(default_factory=list)  # perceptual hashes of sampled frames
    flags: list[str] = field(default_factory=list)  # failed tests of disabled filters

    kind = "clip"

    def row(self) -> dict:
        return {"kind": self.kind, **dataclasses.asdict(self)}
