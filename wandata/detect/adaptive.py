"""``adaptive``: PySceneDetect's AdaptiveDetector; fast, hard cuts only."""
from __future__ import annotations

import numpy as np


class AdaptiveDetector:
    name, size = "adaptive", (128, 72)

    def __init__(self, fps: float = 16.0):
        self.fps = float(fps)

    def stream(self):
        return _AdaptiveStream(self.fps)


class _AdaptiveStream:
    def __init__(self, fps):
        from scenedetect.detectors import AdaptiveDetector as _Adaptive

        self.det, self.fps = _Adaptive(), fps
        self.n = 0          # frames pushed
        self.final = 0      # frames returned
        self.cuts: set[int] = set()
        # A cut is reported window_width frames after the frame it is at.
        self.lag = self.det.window_width + 1

    def _take(self, upto: int) -> np.ndarray:
        out = np.array([i in self.cuts for i in range(self.final, upto)], dtype=bool)
        self.final = max(self.final, upto)
        return out

    def push(self, small):
        from scenedetect.common import FrameTimecode

        for rgb in small:
            # Frame numbers are indices into our own sequence, so they stay exact on
            # variable-frame-rate files, where PySceneDetect's time->frame maths would not.
            cuts = self.det.process_frame(FrameTimecode(self.n, self.fps),
                                          np.ascontiguousarray(rgb[..., ::-1]))
            self.cuts.update(c.frame_num for c in cuts)
            self.n += 1
        return self._take(max(self.final, self.n - self.lag))

    def flush(self):
        from scenedetect.common import FrameTimecode

        if self.n:
            self.cuts.update(c.frame_num for c in self.det.post_process(FrameTimecode(self.n - 1, self.fps)))
        return self._take(self.n)
