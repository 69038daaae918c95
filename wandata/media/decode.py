"""Decode a source once, front to back, and yield its output-grid frames.

Each source frame is decoded exactly once. A frame that the output grid shows
(the resampling rule below) is converted once, straight to the bucket (scaled to
cover, turned upright, centre-cropped, yuv420p); the rest are only counted. Every
frame's presentation time is kept: it is the source's timeline.

The resampling rule, the one place it is defined
-------------------------------------------------
Everything after decoding works on the *output grid*: instants
``g_j = t_first + j / fps`` (``t_first`` = the source's first frame time,
``fps`` = the output rate, 16). Grid frame ``j`` is the source frame a player
shows at ``g_j``: the one with the largest presentation time ``<= g_j``
(sample and hold), with a tolerance of 1/100 of an output frame so that a frame
stamped a hair after ``g_j`` by timestamp rounding still counts as shown.
At 24 fps -> 16 fps the grid takes source frames 0, 1, 3, 4, 6, 7, ...; at
30000/1001 -> 16 it takes 0, 1, 3, 5, 7, 9, 11, 13, 15, 16, ...; a 10 fps source
has each frame repeated as often as it is shown. Because the rule works on
timestamps, variable-frame-rate sources come out at the right speed.

A clip is N consecutive grid frames, so it plays at exactly ``fps`` and shows
the source in real time. Shots, trims and windows are all counted in grid frames.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterator

import av
import numpy as np

from wandata import storage
from wandata.media import threads

EPS_FRACTION = 0.01


def grid_start(t: float, origin: float, fps: float) -> int:
    """The first grid index at which a frame presented at ``t`` is shown."""
    return max(0, math.ceil((t - origin) * fps - EPS_FRACTION))


def source_frames(times: np.ndarray, t0: float, n: int, fps: float) -> np.ndarray:
    """Index of the source frame shown at each of ``n`` instants ``t0 + i / fps``."""
    t = t0 + np.arange(n) / fps
    idx = np.searchsorted(times, t + EPS_FRACTION / fps, side="right") - 1
    return np.clip(idx, 0, len(times) - 1)


@dataclass
class Timeline:
    times: list[float] = field(default_factory=list)   # every decoded frame, seconds
    grid_src: list[int] = field(default_factory=list)  # grid index -> source frame index
    decode_error: str = ""


def grid_frames(path: str, fps: float, convert: Callable[[av.VideoFrame], object],
                timeline: Timeline, each: Callable[[av.VideoFrame], None] | None = None
                ) -> Iterator[tuple[int, object]]:
    """Yield ``(grid index, convert(frame))`` for every grid instant, in order. ``each`` sees
    every decoded source frame (source index ``len(timeline.times) - 1``), before any grid
    instant that shows it is yielded."""
    prev = None  # (frame, time) waiting for its successor's time to know what it covers
    origin = None
    # A URL is streamed through ranged reads (wandata.storage), never copied whole.
    with storage.reading(path) as f, av.open(f, metadata_errors="ignore") as container:
        stream = container.streams.video[0]
        threads.apply_to_stream(stream)
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
                if each is not None:
                    each(frame)
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

