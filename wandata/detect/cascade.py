"""``cascade``, the CPU shot detector: cheap frame differences everywhere, TransNetV2 where
they are unsure.

TransNetV2 costs about 2.5 ms a frame on 2 CPU cores, more than decoding a 720p
frame, so running it on every frame would make it the slowest stage. Most frames
need no network to judge: the frame-difference rules (``cutrule.py``) pass the
frames that change no more than their neighbours, mark hard cuts (on every source
frame, ``source_stream``), and leave the *unsure* spans, which TransNetV2 judges
with its usual 25 frames of context on each side. The gradual rule (``gradual.py``) marks slow dissolves and fades, which
never stand out enough to be unsure.

The mask is rules | TransNetV2(unsure spans): the network adds frames, it never
removes a rule's cut. Footage full of fast motion makes many frames unsure and the
cascade slower. What the network would find in a span the rules call calm (neither
a cut, nor unsure, nor gradual) the cascade misses: it is not TransNetV2 on every
frame.
"""
from __future__ import annotations

import numpy as np

from wandata.detect.base import Buffered, Union
from wandata.detect.cutrule import MEDIAN_HALF, CutStream, classify
from wandata.detect.gradual import GradualStream
from wandata.detect.transnet import TransNetV2Detector, resolve_device

PAD = 8                 # unsure spans grow by this many frames before TransNetV2 judges them


class CascadeDetector:
    name, size = "cascade", (48, 27)

    def __init__(self, threshold: float = 0.5, device: str = "cpu"):
        self.net = TransNetV2Detector(threshold, resolve_device(device))
        self.frames_judged = 0   # how many frames TransNetV2 saw (for the benchmark)
        self.frames_seen = 0

    def stream(self):
        return Union(_CascadeStream(self), GradualStream())

    def source_stream(self, fps: float):
        return CutStream(fps)

    def preload(self) -> None:
        self.net.preload()


class _CascadeStream(Buffered):
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
        # The cut rule's verdicts count from the source-rate stream, where they are surer; the
        # grid's cuts only keep TransNetV2 from judging spans that are plainly cuts.
        mask = np.zeros(hi - lo, bool)
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
