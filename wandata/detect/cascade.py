"""The CPU shot detector: cheap frame differences everywhere, TransNetV2 where they are unsure.

TransNetV2 costs about 2.5 ms a frame on 2 CPU cores, more than decoding a 720p
frame, so running it on every frame would make it the slowest stage. Most frames
need no network to judge:

* within a shot the change from frame to frame stays near its local level
  (camera motion included): such frames are not transitions;
* a hard cut is one isolated spike of change after which the picture stays
  different: marked as a cut without the network;
* anything else that stands out from its neighbourhood (gradual change such as a
  cross-dissolve or a fade, flashes, bursts of motion) is *unsure*: TransNetV2
  judges those spans, with its usual 25 frames of context on each side.

Footage full of fast motion makes many frames unsure and the cascade falls back
to running TransNetV2 on most of it: slower, never less careful.

The hard-cut rule also backs up TransNetV2 when it runs on every frame (GPU): on
the benchmark footage the network misses a cut between two grey textures
(gravel -> grass) that is a tenfold spike of change here. A false cut costs a
little footage; a missed one puts a jump cut into a clip.
"""
from __future__ import annotations

import numpy as np

from wandata.detect.shots import TransNetV2Detector

MEDIAN_HALF = 24        # neighbourhood (frames each side) for the local level of change
UNSURE_RATIO = 2.5      # change this many times the local level is unsure
CUT_MIN = 8.0           # a hard cut changes the mean pixel by at least this much (0..255)
CUT_RATIO = 5.0         # ... and stands this far above the local level
PAD = 8                 # unsure spans grow by this many frames before TransNetV2 judges them


class CascadeDetector:
    name, size = "cascade", (48, 27)

    def __init__(self, threshold: float = 0.5, device: str = "cpu"):
        self.net = TransNetV2Detector(threshold, device)
        self.frames_judged = 0   # how many frames TransNetV2 saw (for the benchmark)
        self.frames_seen = 0

    def stream(self):
        return _CascadeStream(self)

    def preload(self) -> None:
        self.net.preload()


def _changes(f: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame: mean change from the previous frame, from 4 frames back, and between the
    previous and the next frame (does the picture stay changed?)."""
    d1 = np.zeros(len(f), np.float32)
    d4 = np.zeros(len(f), np.float32)
    across = np.zeros(len(f), np.float32)
    if len(f) > 1:
        d1[1:] = np.abs(f[1:] - f[:-1]).mean(axis=(1, 2, 3))
    if len(f) > 4:
        d4[4:] = np.abs(f[4:] - f[:-4]).mean(axis=(1, 2, 3))
    if len(f) > 2:
        across[1:-1] = np.abs(f[2:] - f[:-2]).mean(axis=(1, 2, 3))
    return d1, d4, across


def _local_level(x: np.ndarray) -> np.ndarray:
    from numpy.lib.stride_tricks import sliding_window_view

    padded = np.pad(x, MEDIAN_HALF, mode="reflect") if len(x) > MEDIAN_HALF else np.pad(x, MEDIAN_HALF, mode="edge")
    return np.median(sliding_window_view(padded, 2 * MEDIAN_HALF + 1), axis=1)


def classify(small: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cut, unsure) masks for a run of small frames, judged from frame differences only."""
    f = small.astype(np.float32)
    d1, d4, across = _changes(f)
    m1, m4 = _local_level(d1), _local_level(d4)
    n = len(f)
    nxt = np.r_[d1[1:], 0]
    prv = np.r_[0, d1[:-1]]
    spike = (d1 >= CUT_MIN) & (d1 >= CUT_RATIO * (m1 + 1)) & (nxt < 0.3 * d1) & (prv < 0.3 * d1)
    spike &= across >= 0.6 * d1  # the picture stays changed: a cut, not a flash
    cut = spike | np.r_[spike[1:], False]  # the last frame before the cut goes too
    after_cut = np.zeros(n, bool)
    for j in np.flatnonzero(spike):
        after_cut[j:j + 4] = True  # d4 spans the cut there; the cut explains it
    unsure = ((d1 > UNSURE_RATIO * (m1 + 0.5)) | (d4 > UNSURE_RATIO * (m4 + 1.0))) & ~after_cut & ~cut
    return cut, unsure


class _Buffered:
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


class _CascadeStream(_Buffered):
    """Decides a prefix whenever enough frames follow it for both the local levels and
    TransNetV2's context."""

    LAG = MEDIAN_HALF + PAD + TransNetV2Detector.CONTEXT + 2

    def __init__(self, det: CascadeDetector):
        super().__init__()
        self.det = det

    def _decide(self, upto: int) -> np.ndarray:
        if upto <= self.done:
            return np.zeros(0, bool)
        f = np.stack(self.frames)
        cut, unsure = classify(f)
        final = upto == self.total
        lo, hi = self.done - self.base, upto - self.base
        # An unsure span that runs past ``hi`` is judged whole, next time.
        grown = np.convolve(unsure, np.ones(2 * PAD + 1), mode="same") > 0
        if not final:
            while hi > lo and grown[hi - 1]:
                hi -= 1
            if hi <= lo:
                return np.zeros(0, bool)
        mask = cut[lo:hi].copy()
        for a, b in _runs(grown[lo:hi]):
            mask[a:b] |= self._judge(f, lo + a, lo + b)
        self.det.frames_seen += hi - lo
        self.done = self.base + hi
        self._forget_before(self.done - MEDIAN_HALF - PAD - TransNetV2Detector.CONTEXT - 4)
        return mask

    def _judge(self, f: np.ndarray, a: int, b: int) -> np.ndarray:
        """TransNetV2's verdict on frames [a, b) of ``f``, with context (edge frames repeated)."""
        c = TransNetV2Detector.CONTEXT
        idx = np.clip(np.arange(a - c, b + c), 0, len(f) - 1)
        self.det.frames_judged += len(idx)
        return self.det.net.predict(f[idx], slice(c, c + (b - a)))


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.flatnonzero(np.diff(np.r_[0, mask.astype(np.int8), 0]))
    return list(zip(edges[::2], edges[1::2]))


class CutRule:
    """The hard-cut rule alone, as a detector stream (OR-ed with TransNetV2's verdicts)."""

    def stream(self):
        return _CutStream()


class _CutStream(_Buffered):
    LAG = MEDIAN_HALF + 2

    def _decide(self, upto: int) -> np.ndarray:
        if upto <= self.done:
            return np.zeros(0, bool)
        cut, _ = classify(np.stack(self.frames))
        out = cut[self.done - self.base:upto - self.base]
        self.done = upto
        self._forget_before(upto - MEDIAN_HALF - 4)
        return out


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
