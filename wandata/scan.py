"""Decode a source once, front to back, into its frame timeline and small frames.

The timeline (every frame's presentation time) is what ``plan`` picks frames
from; the small frames are all the shot detectors look at. Decoding at full
size is the expensive part, so it happens once here and once more only for the
spans that become clips (``transcode``).
"""
from __future__ import annotations

from dataclasses import dataclass

import av
import numpy as np


@dataclass
class Scan:
    pts: np.ndarray      # int64, in time_base units, decode order == display order
    times: np.ndarray    # float64 seconds
    time_base: float
    small: np.ndarray    # uint8 [N, h, w, 3] RGB
    decode_errors: int = 0


def scan(path: str, size: tuple[int, int] = (48, 27)) -> Scan:
    """Every frame's time and an RGB thumbnail of ``size`` (w, h), stored-pixel orientation."""
    w, h = size
    pts_list: list[int] = []
    small: list[np.ndarray] = []
    errors = 0
    with av.open(path, metadata_errors="ignore") as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        tb = float(stream.time_base) if stream.time_base else 1.0
        last = -1
        try:
            for frame in container.decode(stream):
                pts = frame.pts if frame.pts is not None else last + 1
                if pts <= last:  # duplicated or out-of-order timestamp: not a new picture
                    continue
                last = pts
                pts_list.append(pts)
                small.append(frame.to_ndarray(width=w, height=h, format="rgb24",
                                              interpolation="AREA"))
        except av.error.FFmpegError:
            # A truncated or damaged tail: keep what decoded; the caller decides if it is enough.
            errors += 1
    pts_arr = np.asarray(pts_list, dtype=np.int64)
    return Scan(pts=pts_arr, times=pts_arr * tb, time_base=tb,
                small=np.stack(small) if small else np.zeros((0, h, w, 3), np.uint8),
                decode_errors=errors)
