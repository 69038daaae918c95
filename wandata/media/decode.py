"""Decode a source once, front to back, and yield its output-grid frames.

Each source frame is decoded exactly once. A frame that the output grid shows
(see ``plan``) is converted once, straight to the bucket (scaled to cover,
turned upright, centre-cropped, yuv420p); the rest are only counted. Every
frame's presentation time is kept: it is the source's timeline.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import av

from wandata.ingest.windows import grid_start


@dataclass
class Timeline:
    times: list[float] = field(default_factory=list)   # every decoded frame, seconds
    grid_src: list[int] = field(default_factory=list)  # grid index -> source frame index
    decode_error: str = ""


def grid_frames(path: str, fps: float, convert: Callable[[av.VideoFrame], object],
                timeline: Timeline) -> Iterator[tuple[int, object]]:
    """Yield ``(grid index, convert(frame))`` for every grid instant, in order."""
    prev = None  # (frame, time) waiting for its successor's time to know what it covers
    origin = None
    with av.open(path, metadata_errors="ignore") as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        tb = float(stream.time_base) if stream.time_base else 0.0
        last_pts = None
        try:
            for frame in container.decode(stream):
                pts = frame.pts
                if pts is None or (last_pts is not None and pts <= last_pts):
                    continue  # no timestamp, or not a new picture
                last_pts = pts
                t = pts * tb
                if origin is None:
                    origin = t
                if prev is not None:
                    yield from _emit(prev, grid_start(t, origin, fps), convert, timeline)
                timeline.times.append(t)
                prev = frame
        except av.error.FFmpegError as e:
            timeline.decode_error = str(e)  # a damaged tail: keep what decoded
    if prev is not None:
        times = timeline.times
        dur = (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else 1 / fps
        yield from _emit(prev, grid_start(times[-1] + dur, origin, fps), convert, timeline)


def _emit(frame, end: int, convert, timeline: Timeline):
    """The grid instants from the current grid length up to ``end`` show ``frame``."""
    if end <= len(timeline.grid_src):
        return
    image = convert(frame)
    src = len(timeline.times) - 1
    while len(timeline.grid_src) < end:
        timeline.grid_src.append(src)
        yield len(timeline.grid_src) - 1, image

