"""Gradual transitions (cross-dissolves, fades and dips through a flat colour) found without a
network, and ``TransitionRule``: these rules on the grid with the hard-cut rule on every source
frame, which every detector unions with its own verdicts.

A change spread over seconds never stands out from the local level of frame differences that
``cutrule.py`` compares against, so it needs tests of its own, on tiny luma frames (24x14):

* Blend: inside a dissolve, each frame is close to a mix of the frames ``k`` before and ``k``
  after it, and far from both. Tested at ``k`` = 2, 4, 8 and 16 frames, so that dissolves from
  0.3 s to 5 s and beyond stand out at one scale. A slow camera move is a straight line between
  two frames too (each pixel changes along the picture's gradients), so a hit also needs a change
  that no small camera move of the picture explains; the margin is thin (a run's unexplained
  share: 0.78-0.80 for the sample montage's slow pans, 0.79-0.99 in the dissolves tried), hence
  ``MOTION_RUN`` over a run of ``max(3, k/2)`` hits. A run grows over the hits next to it (up to
  ``2k``) and is marked with ``SPREAD`` frames on each side, ``LONG_SPREAD`` when long: the faint
  ends of a long dissolve are no hits. A fade is a dissolve to a flat frame: this finds most.
* Fade ramp: the contrast (std of luma) sinks below half its local maximum for at least three
  frames and reaches a nearly flat frame near them; the marked span grows over the ramp of
  contrast that leads down to it and back up. A backup for fades the blend test finds anyway; a
  flash of one or two frames is too short for it, a cut into a dim shot does not reach flat.

Both are computed as frames arrive (each frame's blend residuals once), and a frame's verdict
is final once ``LAG`` frames follow it: the result does not depend on how the frames were fed.
"""
from __future__ import annotations

import cv2
import numpy as np

from wandata.detect.cutrule import CutStream

SIZE = (24, 14)                 # luma frames the tests run on
SCALES = (2, 4, 8, 16)          # blend distances k (grid frames)
SPREAD = 4                      # frames marked on each side of a run of hits (its faint ends),
LONG_SPREAD = 12                # ... on each side of a run of at least twice this
BLEND_SCORE = 0.35              # residual of the best mix / change to the nearer end
BLEND_ALPHA = (0.15, 0.85)      # the mix is really between the two ends
BLEND_MIN = 6.0                 # the two ends differ by this much (mean luma, 0..255)
MOTION_LEFT = 0.77              # ... and a camera move explains less than 1 - this of it,
MOTION_RUN = 0.82               # ... on average less than 1 - this over a run
FADE_HALF = 24                  # contrast is compared with its maximum over +-this many frames
FADE_LOW, FADE_DEEP = 0.5, 0.2  # below this share of it is low; somewhere near it, below deep
FADE_FLAT = 6.0                 # ... and near it, flat: a cut into a dim shot is no fade
FADE_MIN_RUN = 3                # frames of low contrast in a row
FADE_NEAR = 8                   # the deep frame is at most this far from the low run
RAMP_LOOK, RAMP_KEEP = 16, 0.92  # a ramp frame is below KEEP x the max of its next LOOK frames
RAMP_MAX = 24                   # the ramp grows a fade's span by at most this many frames

_KMAX = max(SCALES)
# A hit's end frame, its seed run, growth, a long run, its spread.
_BLEND_REACH = 3 * _KMAX + max(3, _KMAX // 2) + 3 * LONG_SPREAD
_FADE_REACH = FADE_HALF + FADE_NEAR + FADE_MIN_RUN + RAMP_MAX + 1


def luma(small: np.ndarray) -> np.ndarray:
    """[n, 14, 24] float32 luma of RGB frames of any size."""
    out = np.empty((len(small), SIZE[1], SIZE[0]), np.float32)
    for i, rgb in enumerate(small):
        y = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
        out[i] = cv2.resize(y, SIZE, interpolation=cv2.INTER_AREA)
    return out


def _blend_hits(y: np.ndarray, k: int) -> np.ndarray:
    """At every centre t of ``y[t-k], y[t], y[t+k]`` (len(y) - 2k values): 0 where it is no
    mix of its ends, else the share of the change that no camera move explains."""
    a, b, c = y[:-2 * k], y[k:-k], y[2 * k:]
    n = len(b)
    ends = (c - a).reshape(n, -1)
    mid = (b - a).reshape(n, -1)
    alpha = (ends * mid).sum(1) / np.maximum((ends * ends).sum(1), 1e-6)
    residual = np.abs(mid - alpha[:, None] * ends).mean(1)
    nearer = np.minimum(np.abs(mid).mean(1), np.abs(c - b).reshape(n, -1).mean(1))
    change = np.abs(ends).mean(1)
    hit = ((residual < BLEND_SCORE * nearer) & (alpha >= BLEND_ALPHA[0]) & (alpha <= BLEND_ALPHA[1])
           & (change >= BLEND_MIN))
    score = np.zeros(n, np.float32)
    if hit.any():
        i = np.flatnonzero(hit)
        left = _unexplained(b[i], ends[i]) / change[i]
        score[i] = np.maximum(left, 1e-3)
    return score


def _unexplained(centre: np.ndarray, change: np.ndarray) -> np.ndarray:
    """Mean |change| left once the best small camera move (shift, zoom, rotation, shear) of
    ``centre`` is taken out: a slow pan changes each pixel along the picture's gradients, which
    is also a straight line between two frames, but a dissolve's change is another picture."""
    n, h, w = centre.shape
    gy, gx = np.gradient(centre, axis=(1, 2))
    xs = np.arange(w, dtype=np.float32) - (w - 1) / 2
    ys = (np.arange(h, dtype=np.float32) - (h - 1) / 2)[:, None]
    j = np.stack([gx, gy, xs * gx, ys * gx, xs * gy, ys * gy], -1).reshape(n, h * w, 6)
    p = np.linalg.solve(np.einsum("npi,npj->nij", j, j) + 1e-3 * np.eye(6, dtype=np.float32),
                        np.einsum("npi,np->ni", j, change)[..., None])[..., 0]
    return np.abs(change - np.einsum("npi,ni->np", j, p)).mean(1)


def _dilate(x: np.ndarray, back: int, fwd: int) -> np.ndarray:
    """out[i] = any(x[i - fwd .. i + back]): spreads each True ``back`` frames back, ``fwd`` on."""
    n = len(x)
    c = np.r_[0, np.cumsum(x, dtype=np.int64)]
    lo = np.clip(np.arange(n) - fwd, 0, n)
    hi = np.clip(np.arange(n) + back + 1, 0, n)
    return c[hi] > c[lo]


def _erode(x: np.ndarray, run: int) -> np.ndarray:
    """out[s] = all(x[s .. s + run - 1]) (False where the run would pass the end)."""
    n = len(x)
    c = np.r_[0, np.cumsum(x, dtype=np.int64)]
    out = np.zeros(n, bool)
    if n >= run:
        out[:n - run + 1] = (c[run:] - c[:-run]) == run
    return out


def _window_sum(x: np.ndarray, run: int) -> np.ndarray:
    """out[s] = sum(x[s .. s + run - 1]) (what is there of it near the end)."""
    c = np.r_[0, np.cumsum(x, dtype=np.float64)]
    s = np.arange(len(x))
    return c[np.minimum(s + run, len(x))] - c[s]


def _in_runs(x: np.ndarray, run: int) -> np.ndarray:
    """The frames of ``x`` that lie in a run of at least ``run`` Trues."""
    return _dilate(_erode(x, run), back=0, fwd=run - 1)


def _window_max(c: np.ndarray, back: int, fwd: int) -> np.ndarray:
    from numpy.lib.stride_tricks import sliding_window_view

    padded = np.pad(c, (back, fwd), mode="edge")  # edge values lie in every clipped window anyway
    return sliding_window_view(padded, back + fwd + 1).max(axis=1)


def _grow(core: np.ndarray, ramp: np.ndarray, step: int, most: int, edge: bool = True) -> np.ndarray:
    """``core`` grown by up to ``most`` frames in direction ``step`` (-1: back) over ``ramp``
    frames, plus (``edge``) the first frame beyond the ramp."""
    inner = core.copy()
    for _ in range(most):
        nxt = inner | (np.roll(inner, step) & ramp)
        nxt[0 if step > 0 else -1] = inner[0 if step > 0 else -1]
        if np.array_equal(nxt, inner):
            break
        inner = nxt
    if not edge:
        return inner
    beyond = np.roll(inner, step)
    beyond[0 if step > 0 else -1] = False
    return inner | beyond


def _mask(hits: dict[int, np.ndarray], contrast: np.ndarray) -> np.ndarray:
    """The gradual-transition mask over a stretch of frames, from per-frame blend hits and
    contrast."""
    out = np.zeros(len(contrast), bool)
    for k, h in hits.items():
        need = max(3, k // 2)
        seed = _erode(h >= MOTION_LEFT, need) & (_window_sum(h, need) >= MOTION_RUN * need)
        run = _dilate(seed, back=0, fwd=need - 1)
        if run.any():  # a camera move explains more of a dissolve's ends: grow over any mix there
            run = _grow(run, h > 0, -1, 2 * k, edge=False) | _grow(run, h > 0, 1, 2 * k, edge=False)
        # A long dissolve's faint ends (under a tenth of a mix) are no hits: a run as long as
        # two spreads is one of those, and gets the longer spread.
        out |= _dilate(run, back=min(k, SPREAD), fwd=min(k, SPREAD))
        out |= _dilate(_in_runs(run, 2 * LONG_SPREAD), back=LONG_SPREAD, fwd=LONG_SPREAD)
    if not len(contrast):
        return out
    level = _window_max(contrast, FADE_HALF, FADE_HALF)
    low = _in_runs(contrast < FADE_LOW * level, FADE_MIN_RUN)
    flat = (contrast < FADE_DEEP * level) & (contrast < FADE_FLAT)
    core = low & _dilate(flat, FADE_NEAR, FADE_NEAR)
    if core.any():
        down = contrast < RAMP_KEEP * _window_max(contrast, RAMP_LOOK, 0)  # still falling towards it
        up = contrast < RAMP_KEEP * _window_max(contrast, 0, RAMP_LOOK)    # still rising after it
        out |= _grow(core, down, -1, RAMP_MAX) | _grow(core, up, 1, RAMP_MAX)
    return out


class GradualRule:
    """The blend and fade-ramp tests alone, as a detector stream."""

    name, size = "gradual", (48, 27)

    def stream(self):
        return GradualStream()


class GradualStream:
    LAG = max(_BLEND_REACH, _FADE_REACH) + 2
    HISTORY = LAG + RAMP_LOOK + 2   # per-frame values kept behind the first undecided frame

    def __init__(self):
        self.y = np.zeros((0, SIZE[1], SIZE[0]), np.float32)  # the last 2 * _KMAX luma frames
        self.base = 0                   # absolute index of the first kept per-frame value
        self.contrast = np.zeros(0, np.float32)
        self.hits = {k: np.zeros(0, np.float32) for k in SCALES}  # centres base.. total - k - 1
        self.done = 0
        self.total = 0

    def push(self, small):
        if len(small):
            y = luma(small)
            self.contrast = np.r_[self.contrast, y.reshape(len(y), -1).std(1)]
            self.y = np.concatenate([self.y, y])
            self.total += len(y)
            for k in SCALES:
                have = self.base + len(self.hits[k])  # next centre without a verdict
                first = max(have, k)
                if self.total - k > first:
                    ends = self.y[len(self.y) - (self.total - first) - k:]
                    new = _blend_hits(ends, k)
                    pad = np.zeros(first - have, np.float32)  # centres too near the start to test
                    self.hits[k] = np.r_[self.hits[k], pad, new]
            self.y = self.y[-2 * _KMAX:]
        return self._decide(self.total - self.LAG, final=False)

    def flush(self):
        return self._decide(self.total, final=True)

    def _decide(self, upto: int, final: bool) -> np.ndarray:
        if upto <= self.done:
            return np.zeros(0, bool)
        n = self.total - self.base
        # Centres too near the end to test are no hits; before the end they are not known
        # yet, and LAG keeps them out of the frames decided now.
        hits = {k: np.r_[h, np.zeros(n - len(h), np.float32)] for k, h in self.hits.items()}
        if final:
            self.hits = hits
        mask = _mask(hits, self.contrast)
        out = mask[self.done - self.base:upto - self.base]
        self.done = upto
        drop = max(0, self.done - self.HISTORY - self.base)
        if drop:
            self.base += drop
            self.contrast = self.contrast[drop:]
            self.hits = {k: h[drop:] for k, h in self.hits.items()}
        return out


def gradual(small: np.ndarray) -> np.ndarray:
    """The gradual-transition mask of frames held in memory (the stream gives the same)."""
    s = GradualStream()
    return np.concatenate([s.push(small), s.flush()]).astype(bool)


class TransitionRule:
    """The rules without a network: gradual transitions (here) on the grid, hard cuts
    (``cutrule.py``) on every source frame. Every detector unions its verdicts with these, and
    nothing overrules them. Frames of another size are first scaled to the 48x27 the rules were
    tuned on."""

    name, size = "rules", (48, 27)

    def stream(self):
        return _Scaled(GradualStream(), self.size)

    def source_stream(self, fps: float):
        return _Scaled(CutStream(fps), self.size)


class _Scaled:
    def __init__(self, stream, size: tuple[int, int]):
        self.inner, self.size = stream, size

    def push(self, small):
        if len(small) and (small.shape[2], small.shape[1]) != self.size:
            small = np.stack([cv2.resize(f, self.size, interpolation=cv2.INTER_AREA) for f in small])
        return self.inner.push(small)

    def flush(self):
        return self.inner.flush()
