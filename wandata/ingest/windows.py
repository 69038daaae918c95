"""The output grid, and windows of exactly N grid frames inside each shot.

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
from dataclasses import dataclass

import numpy as np

EPS_FRACTION = 0.01


def grid_start(t: float, origin: float, fps: float) -> int:
    """The first grid index at which a frame presented at ``t`` is shown."""
    return max(0, math.ceil((t - origin) * fps - EPS_FRACTION))


def source_frames(times: np.ndarray, t0: float, n: int, fps: float) -> np.ndarray:
    """Index of the source frame shown at each of ``n`` instants ``t0 + i / fps``."""
    t = t0 + np.arange(n) / fps
    idx = np.searchsorted(times, t + EPS_FRACTION / fps, side="right") - 1
    return np.clip(idx, 0, len(times) - 1)


@dataclass(frozen=True)
class Window:
    shot_index: int
    window_index: int
    start: int          # first grid frame
    n: int

    @property
    def frames(self) -> range:
        return range(self.start, self.start + self.n)


def window_starts(a: int, b: int, n: int, mode: str, k: int = 3) -> list[int]:
    """Start grid indices of the windows in the shot [a, b] (inclusive), in order.

    For ``head`` and ``chunk`` the windows of a shot's beginning [a, b'] are the
    first windows of the whole shot [a, b], b >= b': they can be written before
    the shot's end is known. ``uniform`` needs the whole shot."""
    fit = b - a + 1
    if fit < n:
        return []
    if mode == "head":
        return [a]
    count = fit // n
    if mode == "chunk":
        return [a + i * n for i in range(count)]
    count = min(k, count)
    if count == 1:
        return [a]
    # Spread evenly between the first and the last possible start; never overlapping
    # because count <= fit // n.
    last = b - n + 1
    return [a + round(i * (last - a) / (count - 1)) for i in range(count)]


def shortfall_reason(length: int, n: int, fps: float) -> str:
    have = length / fps
    fit = max(1, (length - 1) // 4 * 4 + 1)
    return (f"shot is {have:.2f} s long; {n} frames at {fps:g} fps need {n / fps:.2f} s "
            f"(a smaller --frames such as {min(fit, max(1, n - 4))} would keep it)")
