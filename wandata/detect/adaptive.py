"""``adaptive``: PySceneDetect's AdaptiveDetector on 128x72 frames, united with the rules of
``gradual.TransitionRule`` (on the same frames scaled to 48x27) for gradual transitions."""
from __future__ import annotations

import numpy as np

from wandata.detect.base import Union
from wandata.detect.cutrule import STAYS
from wandata.detect.gradual import TransitionRule

FLASH = 3               # a flash lasts up to this many frames, then its picture returns


class AdaptiveDetector:
    name, size = "adaptive", (128, 72)
    source_size = TransitionRule.size   # the cut rule's, so nothing is scaled twice

    def __init__(self, fps: float = 16.0):
        self.fps = float(fps)

    def stream(self):
        return Union(_AdaptiveStream(self.fps), TransitionRule().stream())

    def source_stream(self, fps: float):
        return TransitionRule().source_stream(fps)


class _AdaptiveStream:
    def __init__(self, fps):
        from scenedetect.detectors import AdaptiveDetector as _Adaptive

        # The default min_scene_len (15 frames, ~1 s on the grid) drops every cut that follows
        # another within a second: the short shot is merged into a clip of the next one.
        self.det, self.fps = _Adaptive(min_scene_len=1), fps
        self.n = 0          # frames pushed
        self.final = 0      # frames returned
        self.cuts: set[int] = set()
        self.small: dict[int, np.ndarray] = {}  # recent frames, for the flash test
        # A cut is reported window_width frames after the frame it is at; the flash test needs
        # FLASH + 1 frames after it.
        self.lag = self.det.window_width + 1 + FLASH + 1

    def _flash(self, c: int) -> bool:
        """Whether the change at ``c`` is a flash: within FLASH + 1 frames the picture returns
        to the one before it (a cut leaves it changed, like ``cutrule``'s ``later`` test)."""
        f = {i: x.astype(np.float32) for i, x in self.small.items() if c - FLASH - 1 <= i <= c + FLASH}
        if c - 1 not in f or c not in f:
            return False
        jump = np.abs(f[c] - f[c - 1]).mean()
        for a in range(1, FLASH + 2):          # frames before the flash ...
            for b in range(0, FLASH + 2 - a):  # ... and after it, at most FLASH + 1 apart
                if c - a in f and c + b in f and \
                        np.abs(f[c + b] - f[c - a]).mean() < (1 - STAYS) * jump:
                    return True
        return False

    def _take(self, upto: int) -> np.ndarray:
        out = np.array([i in self.cuts and not self._flash(i) for i in range(self.final, upto)], dtype=bool)
        self.final = max(self.final, upto)
        for i in [i for i in self.small if i < self.final - FLASH - 2]:
            del self.small[i]
        return out

    def push(self, small):
        from scenedetect.common import FrameTimecode

        for rgb in small:
            # Frame numbers are indices into our own sequence, so they stay exact on
            # variable-frame-rate files, where PySceneDetect's time->frame maths would not.
            cuts = self.det.process_frame(FrameTimecode(self.n, self.fps),
                                          np.ascontiguousarray(rgb[..., ::-1]))
            self.cuts.update(c.frame_num for c in cuts)
            self.small[self.n] = np.array(rgb)  # a copy: the caller may reuse its buffer
            self.n += 1
        return self._take(max(self.final, self.n - self.lag))

    def flush(self):
        from scenedetect.common import FrameTimecode

        if self.n:
            self.cuts.update(c.frame_num for c in self.det.post_process(FrameTimecode(self.n - 1, self.fps)))
        return self._take(self.n)
