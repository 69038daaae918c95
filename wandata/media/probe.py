"""Probe a source: can it be read, what is in it, and what must be done to use it.

Reads container metadata and demuxes the video packets (no decoding) to get every
frame's timestamp, which tells a variable frame rate from a constant one and a
truncated file from a whole one. Rotation comes from the display matrix a phone
writes; a video shot upright is stored landscape and must come out portrait.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import av
import numpy as np

from wandata import storage
from wandata.dataset.records import DROPPED, FAILED, SourceRecord


def content_hash(path: Path | str, chunk: int = 1 << 20) -> str:
    h = hashlib.blake2b(digest_size=20)
    with storage.open_bytes(path) as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _rotation(container, stream) -> int:
    """Clockwise degrees to turn stored pixels to display them (0, 90, 180, 270)."""
    for frame in container.decode(stream):
        # av's rotation is the display matrix angle, counter-clockwise.
        return int(round(-(frame.rotation or 0) / 90.0)) % 4 * 90
    return 0


def probe(path: Path | str, min_duration_s: float = 0.5) -> SourceRecord:
    """Fill a SourceRecord; failures and unusable sources come back with status and reason.
    ``path`` may be an object-store URL (``wandata.storage``): it is streamed, not copied."""
    path = path if storage.is_url(path) else Path(path)
    rec = SourceRecord(path=str(path))
    problem = _read_bytes(rec, path)
    if problem:
        return _fail(rec, *problem)
    with storage.reading(path) as f:
        return _probe_container(rec, f, min_duration_s)


def _probe_container(rec: SourceRecord, f, min_duration_s: float) -> SourceRecord:
    try:
        container = av.open(f, metadata_errors="ignore")
    except av.error.FFmpegError as e:
        return _fail(rec, "not_a_video", error=_why(e))
    with container:
        rec.container = container.format.name
        rec.has_audio = bool(container.streams.audio)
        if not container.streams.video:
            if rec.has_audio:
                return _fail(rec, "audio_only")
            return _fail(rec, "not_a_video", "the file has no video stream; nothing to cut clips from")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        rec.codec = ctx.name or ""
        rec.pix_fmt = ctx.pix_fmt or ""
        rec.width, rec.height = ctx.width, ctx.height
        declared = _declared_duration(container, stream)
        try:
            pts = _packet_times(container, stream)
            container.seek(0)
            rec.rotation = _rotation(container, stream)
        except av.error.FFmpegError as e:
            return _fail(rec, "decode_error", f"the video stream cannot be read ({_why(e)}); the file is corrupt")
    if rec.width <= 0 or rec.height <= 0 or len(pts) == 0:
        return _fail(rec, "decode_error", "no decodable video frames; the file is truncated or corrupt")
    _timing(rec, pts, declared, min_duration_s)
    return rec


def _read_bytes(rec: SourceRecord, path: Path) -> tuple[str, str] | None:
    """Size and content hash; (code, reason) when the file cannot be read or is empty."""
    try:
        rec.size_bytes = storage.size(path)
    except storage.StorageError:
        raise  # the store, not the file: recorded as storage_error, retried by a rerun
    except OSError as e:
        return "unreadable", f"cannot read the file ({e.strerror}); check its permissions"
    if rec.size_bytes == 0:
        return "empty_file", "the file is empty (0 bytes); copy it again from the original"
    try:
        rec.content_hash = content_hash(path)
    except storage.StorageError:
        raise
    except OSError as e:  # stat works on a file without read permission; reading does not
        return "unreadable", f"cannot read the file ({e.strerror}); check its permissions"
    rec.source_id = rec.content_hash[:16]
    return None


def _timing(rec: SourceRecord, pts: np.ndarray, declared: float, min_duration_s: float) -> None:
    """Frame count, duration, rate, truncation and length verdict from the packet timeline."""
    rec.display_width, rec.display_height = (
        (rec.height, rec.width) if rec.rotation in (90, 270) else (rec.width, rec.height))
    rec.num_frames = len(pts)
    deltas = np.diff(pts)
    mean = float(np.mean(deltas)) if len(deltas) else 0.0
    rec.duration_s = float(pts[-1] - pts[0] + (mean if mean > 0 else 0.0))
    rec.fps = 1.0 / mean if mean > 0 else 0.0
    # A constant-rate file has one delta up to timestamp rounding (1 tick of a coarse timebase).
    rec.vfr = bool(len(deltas) > 1 and (deltas.max() - deltas.min()) > max(0.002, 0.1 * mean))
    if declared and declared > rec.duration_s + max(0.5, 0.05 * declared):
        # A warning while clips come from the rest; the status stays until a verdict below.
        rec.set(rec.status, "truncated", duration_s=rec.duration_s, declared_s=declared)
    if rec.duration_s < min_duration_s:
        if rec.reason_code == "truncated":
            rec.status = FAILED  # too short because it was cut off: the copy is at fault
        else:
            rec.set(DROPPED, "too_short", duration_s=rec.duration_s, minimum=min_duration_s)


def _packet_times(container, stream) -> np.ndarray:
    """Presentation times (s) of every video packet, sorted: the frame timeline without decoding."""
    tb = float(stream.time_base)
    times = [p.pts for p in container.demux(stream) if p.pts is not None and p.size > 0]
    return np.sort(np.asarray(times, dtype=np.float64) * tb)


def _declared_duration(container, stream) -> float:
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    return container.duration / 1e6 if container.duration else 0.0


def _why(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e)


def _fail(rec: SourceRecord, code: str, reason: str | None = None, **figures) -> SourceRecord:
    rec.set(FAILED, code, reason, **figures)
    return rec
