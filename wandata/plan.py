"""Plan windows of exactly N frames at a constant output rate inside each shot.

The resampling rule, the one place it is defined
-------------------------------------------------
Output frame ``i`` of a window that starts at time ``t0`` shows the source as a
player would at time ``t_i = t0 + i / fps``: the source frame with the largest
presentation time ``<= t_i`` (sample and hold). A small tolerance (1/100 of an
output frame) absorbs timestamp rounding so that a source frame stamped a hair
after ``t_i`` still counts as shown. ``t0`` is always the presentation time of a
real source frame (the first usable frame of the shot, or a multiple of the
window length after it). At 24 fps -> 16 fps this picks source frames
0, 1, 3, 4, 6, 7, ...; at 30000/1001 -> 16 it picks 0, 1, 3, 5, 7, 9, 11, 13, 15, 16, ...

Because the rule works on timestamps, variable-frame-rate sources come out at
the right speed too.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS_FRACTION = 0.01


def source_frames(times: np.ndarray, t0: float, n: int, fps: float) -> np.ndarray:
    """Index of the source frame that feeds each of ``n`` output frames starting at ``t0``."""
    t = t0 + np.arange(n) / fps
    idx = np.searchsorted(times, t + EPS_FRACTION / fps, side="right") - 1
    return np.clip(idx, 0, len(times) - 1)


@dataclass
class Window:
    shot_index: int
    window_index: int
    shot: tuple[int, int]        # inclusive source frame range of the shot
    start_s: float
    fps: float
    src_frames: np.ndarray       # one source frame index per output frame

    @property
    def end_s(self) -> float:    # first instant not covered by the window
        return self.start_s + len(self.src_frames) / self.fps


@dataclass
class Dropped:
    shot_index: int
    shot: tuple[int, int]
    reason: str


def fits(times: np.ndarray, shot: tuple[int, int], t0: float, n: int, fps: float) -> bool:
    """All output frames of the window come from inside the shot (and the shot keeps
    showing its last frame for the whole of the last output frame's instant)."""
    a, b = shot
    idx = source_frames(times, t0, n, fps)
    if idx[0] < a or idx[-1] > b:
        return False
    if b == len(times) - 1 and len(times) > 1:
        # The file's last frame has no successor to end its display: trust it for one
        # mean frame duration, no longer.
        return t0 + (n - 1) / fps < times[b] + _frame_duration(times)
    return True


def _starts(times, shot, n, fps, mode, k) -> list[float]:
    a, b = shot
    t_first = float(times[a])
    step = n / fps
    if not fits(times, shot, t_first, n, fps):
        return []
    if mode == "head":
        return [t_first]
    # The latest start that still fits: search over the shot's own frame times.
    latest = t_first
    lo, hi = a, b
    while lo <= hi:
        mid = (lo + hi) // 2
        if fits(times, shot, float(times[mid]), n, fps):
            latest, lo = float(times[mid]), mid + 1
        else:
            hi = mid - 1
    if mode == "chunk":
        count = int((latest - t_first) // step) + 1
        return [t_first + j * step for j in range(count)]
    # uniform: up to k windows, spread evenly, never overlapping
    count = min(k, int((latest - t_first) // step) + 1)
    if count == 1:
        return [t_first]
    raw = np.linspace(t_first, latest, count)
    # Snap to real frame times so each window starts on a source frame.
    return [float(times[np.searchsorted(times, t, side="right") - 1]) for t in raw]


def plan_windows(times: np.ndarray, shots: list[tuple[int, int]], n: int, fps: float,
                 mode: str = "chunk", k: int = 3) -> tuple[list[Window], list[Dropped]]:
    windows, dropped = [], []
    need = (n - 1) / fps + 1 / fps
    for si, shot in enumerate(shots):
        starts = _starts(times, shot, n, fps, mode, k)
        if not starts:
            a, b = shot
            span = float(times[b] - times[a]) + _frame_duration(times)
            dropped.append(Dropped(si, shot, (
                f"shot is {span:.2f} s long; {n} frames at {fps:g} fps need {need:.2f} s "
                f"(a smaller --frames such as {_shorter(n, span, fps)} would keep it)")))
            continue
        for wi, t0 in enumerate(starts):
            windows.append(Window(si, wi, shot, t0, fps, source_frames(times, t0, n, fps)))
    return windows, dropped


def _frame_duration(times: np.ndarray) -> float:
    return float((times[-1] - times[0]) / (len(times) - 1)) if len(times) > 1 else 0.0


def _shorter(n: int, span: float, fps: float) -> int:
    fit = int(span * fps)
    m = max(1, (fit - 1) // 4 * 4 + 1)
    return min(m, max(1, n - 4))
