"""Frame-difference rules: hard cuts found without a network, and frames too unclear to judge.

* Within a shot the change from frame to frame stays near its local level
  (camera motion included): such frames are not transitions.
* A hard cut is one isolated spike of change after which the picture stays
  different: ``CutRule`` marks it as a cut.
* Anything else that stands out from its neighbourhood (gradual change such as a
  cross-dissolve or a fade, flashes, bursts of motion) is *unsure*: the cascade
  (``cascade.py``) has TransNetV2 judge those spans.

The hard-cut rule also backs up TransNetV2 when it runs on every frame (GPU): on
the benchmark footage the network misses a cut between two grey textures
(gravel -> grass) that is a tenfold spike of change here. A false cut costs a
little footage; a missed one puts a jump cut into a clip.
"""
from __future__ import annotations

import numpy as np

from wandata.detect.base import Buffered

MEDIAN_HALF = 24        # neighbourhood (frames each side) for the local level of change
UNSURE_RATIO = 2.5      # change this many times the local level is unsure
CUT_MIN = 8.0           # a hard cut changes the mean pixel by at least this much (0..255)
CUT_RATIO = 5.0         # ... and stands this far above the local level


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


class CutRule:
    """The hard-cut rule alone, as a detector stream (OR-ed with TransNetV2's verdicts)."""

    def stream(self):
        return _CutStream()


class _CutStream(Buffered):
    LAG = MEDIAN_HALF + 2

    def _decide(self, upto: int) -> np.ndarray:
        if upto <= self.done:
            return np.zeros(0, bool)
        cut, _ = classify(np.stack(self.frames))
        out = cut[self.done - self.base:upto - self.base]
        self.done = upto
        self._forget_before(upto - MEDIAN_HALF - 4)
        return out
