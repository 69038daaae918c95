"""The detector interface, and the stream pieces that several detectors share.

A detector maps a source's small frames to a per-frame transition mask (True =
the frame is a cut or part of a gradual transition such as a cross-dissolve),
fed as frames arrive. Shots are the runs of frames outside the mask
(``tracker.ShotTracker``).

A detector is a class with ``name``, ``size`` (the (w, h) of the small frames it
reads) and ``stream()``; it is built with whichever of the keyword arguments
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


def transitions(detector: Detector, small: np.ndarray) -> np.ndarray:
    """The whole mask of a clip held in memory (the streaming path gives the same result)."""
    s = detector.stream()
    return np.concatenate([s.push(small), s.flush()]).astype(bool)


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
