"""Windows of exactly N grid frames inside each shot.

Shots and windows are counted in frames of the 16 fps output grid, whose
resampling rule lives in ``wandata.media.decode``.
"""
from __future__ import annotations

from dataclasses import dataclass


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
