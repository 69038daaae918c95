"""Shots from a transition mask: the clean runs of frames between transitions, trimmed at both
ends so that no frame from a transition's fringe ends up in a clip."""
from __future__ import annotations

import numpy as np


class ShotTracker:
    """Turns a growing transition mask (on grid frames) into shots as soon as they are known.

    A shot is a run of frames outside the mask, minus ``trim`` frames at each side that
    borders a transition (the file's own start and end are not trimmed). ``update`` returns
    the shots that closed and the provisional extent of the open one."""

    def __init__(self, trim: int):
        self.trim = trim
        self.n = 0               # frames with a final verdict
        self.run_start = None    # first frame of the current clean run
        self.after_transition = False

    def update(self, mask: np.ndarray) -> tuple[list[tuple[int, int]], tuple[int, int] | None]:
        closed = []
        for m in mask:
            i = self.n
            if m:
                if self.run_start is not None:
                    shot = self._span(i - 1, end_is_transition=True)
                    if shot:
                        closed.append(shot)
                    self.run_start = None
                self.after_transition = True
            elif self.run_start is None:
                self.run_start = i
            self.n += 1
        return closed, self._open()

    def finish(self) -> list[tuple[int, int]]:
        """End of the file: the open shot closes without a trailing trim."""
        if self.run_start is None:
            return []
        shot = self._span(self.n - 1, end_is_transition=False)
        self.run_start = None
        return [shot] if shot else []

    def open_start(self) -> int:
        """First usable frame of the unfinished shot (its start trim applied)."""
        a = self.run_start
        return a + (self.trim if self.after_transition and a > 0 else 0)

    def split(self) -> list[tuple[int, int]]:
        """Close the unfinished shot here, untrimmed, and go on with a new one (used to bound
        memory in modes that need a whole shot)."""
        if self.run_start is None or self.run_start >= self.n:
            return []
        shot = (self.open_start(), self.n - 1)
        self.run_start, self.after_transition = self.n, False
        return [shot] if shot[0] <= shot[1] else []

    def _open(self) -> tuple[int, int] | None:
        # The frames up to the last final one are clean, but a transition may start right
        # after it, so only what survives that trim is certain.
        if self.run_start is None:
            return None
        return self._span(self.n - 1, end_is_transition=True)

    def _span(self, b: int, end_is_transition: bool) -> tuple[int, int] | None:
        a2 = self.open_start()
        b2 = b - (self.trim if end_is_transition else 0)
        return (a2, b2) if a2 <= b2 else None
