"""The detector interface, and the stream pieces that several detectors share.

A detector maps a source's small frames to a per-frame transition mask (True =
the frame is a cut or part of a gradual transition such as a cross-dissolve),
fed as frames arrive. Shots are the runs of frames outside the mask
(``tracker.ShotTracker``).

A detector is a class with ``name``, ``size`` (the (w, h) of the small frames it
reads) and ``stream()``, fed the 16 fps grid's frames (the pictures clips are made
of). It may also have ``source_stream(fps)``, fed every decoded source frame (at
``source_size`` if it has one, else ``size``), whose verdicts count on the grid frames that show or skip those
frames (``TwoRate``): hard cuts stand out more between source frames than across
the grid's gaps. It is built with whichever of the keyword arguments
``threshold``, ``device`` and ``fps`` its constructor names, and may have a
``preload()`` that loads a model ahead of the first frames. ``registry.py`` finds
detectors by name.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np


class DetectorStream(Protocol):
    def push(self, small: np.ndarray) -> np.ndarray:
        """Feed frames [k, h, w, 3] RGB; returns the transition mask of the frames whose
        verdict became final (in order, continuing where the last call stopped)."""

    def flush(self) -> np.ndarray:
        """No more frames: the mask of every frame not yet returned."""


class Detector(Protocol):
    name: str
    size: tuple[int, int]  # (w, h) of the small frames it reads

    def stream(self) -> DetectorStream: ...


def transitions(detector: Detector, small: np.ndarray, source: np.ndarray | None = None,
                grid_src=None, fps: float = 16.0) -> np.ndarray:
    """The whole grid mask of a clip held in memory (the streaming path gives the same result).
    ``source``: every source frame, ``grid_src``: the source frame each grid frame shows,
    ``fps``: the source's rate; without them the grid frames stand for the source."""
    if source is None:
        source, grid_src, fps = small, list(range(len(small))), 16.0
    s = TwoRate(detector, list(grid_src), fps)
    s.push_source(source)
    return np.concatenate([s.push(small), s.flush()]).astype(bool)


class TwoRate:
    """A detector's grid stream united with its source-rate stream, verdicts on the grid.

    Grid frame ``j`` shows source frame ``grid_src[j]``; it is marked when the source stream
    marks that frame or one the grid skipped since the previous grid frame (a cut between two
    grid frames lies in that gap). Its verdict is final once the grid stream has given one and
    the source stream has decided every frame up to ``grid_src[j]``. Source frames must be
    pushed before the grid frames that show them."""

    def __init__(self, detector: Detector, grid_src: list[int], fps: float):
        self.grid = detector.stream()
        make = getattr(detector, "source_stream", None)
        self.source = make(fps) if make is not None else None
        self.grid_src = grid_src        # grows as the caller decodes
        self.src_mask = np.zeros(0, bool)  # final source verdicts, from frame src_base on
        self.src_base = 0
        self.pending = np.zeros(0, bool)  # grid verdicts not yet returned
        self.returned = 0

    def push_source(self, small: np.ndarray) -> None:
        if self.source is not None and len(small):
            self.src_mask = np.r_[self.src_mask, self.source.push(small)]

    def push(self, small: np.ndarray) -> np.ndarray:
        self.pending = np.r_[self.pending, self.grid.push(small)]
        return self._emit()

    def flush(self) -> np.ndarray:
        if self.source is not None:
            self.src_mask = np.r_[self.src_mask, self.source.flush()]
        self.pending = np.r_[self.pending, self.grid.flush()]
        return self._emit()

    def _emit(self) -> np.ndarray:
        k = len(self.pending)
        if self.source is not None:
            decided = self.src_base + len(self.src_mask)
            gs = np.asarray(self.grid_src[max(0, self.returned - 1):self.returned + k])
            if self.returned == 0:
                gs = np.r_[-1, gs]                  # the first grid frame covers frames 0..
            k = int(np.searchsorted(gs[1:], decided))  # grid frames showing decided frames
            out = self.pending[:k].copy()
            for i in range(k):
                a, b = gs[i] + 1 - self.src_base, gs[i + 1] + 1 - self.src_base
                out[i] |= bool(self.src_mask[max(0, a):max(0, b)].any())
            if k:
                drop = max(0, int(gs[k]) + 1 - self.src_base)  # no later grid frame looks back
                self.src_mask, self.src_base = self.src_mask[drop:], self.src_base + drop
        else:
            out = self.pending
        self.pending = self.pending[k:]
        self.returned += k
        return out.astype(bool)


class Buffered:
    """A detector stream that keeps the small frames of its undecided tail (plus the history
    its rules look back on) and decides a prefix whenever ``LAG`` frames follow it."""

    LAG = 0

    def __init__(self):
        self.frames: list[np.ndarray] = []  # from absolute index self.base on
        self.base = 0
        self.done = 0       # frames with a verdict
        self.total = 0

    def push(self, small):
        self.frames.extend(small)
        self.total += len(small)
        return self._decide(self.total - self.LAG)

    def flush(self):
        return self._decide(self.total)

    def _forget_before(self, index: int) -> None:
        drop = max(0, index - self.base)
        self.frames = self.frames[drop:]
        self.base += drop

    def _decide(self, upto: int) -> np.ndarray:
        raise NotImplementedError


class Union:
    """Frames are transitions when any of several streams says so; verdicts are final once
    every stream has given one."""

    def __init__(self, *streams):
        self.streams = streams
        self.got = [np.zeros(0, bool) for _ in streams]  # verdicts not yet given by all

    def _emit(self, new) -> np.ndarray:
        self.got = [np.concatenate([g, n]) for g, n in zip(self.got, new)]
        k = min(len(g) for g in self.got)
        out = np.logical_or.reduce([g[:k] for g in self.got])
        self.got = [g[k:] for g in self.got]
        return out

    def push(self, small):
        return self._emit([s.push(small) for s in self.streams])

    def flush(self):
        return self._emit([s.flush() for s in self.streams])


class _AllFinal:
    def push(self, small):
        return np.zeros(len(small), dtype=bool)

    def flush(self):
        return np.zeros(0, dtype=bool)


class NoDetector:
    """``none``: the whole file is one shot (already-cut material)."""

    name, size = "none", (16, 9)

    def stream(self):
        return _AllFinal()
