"""Canny edges (OpenCV) on each frame: white edges on black, as three equal channels, the way
DiffSynth's and VideoX-Fun's Canny control videos look."""
from __future__ import annotations

import cv2
import numpy as np

from wandata.controls.base import ControlError, Extractor, Option


class CannyExtractor(Extractor):
    name = "canny"
    options = {
        "low": Option(100, "lower hysteresis threshold of cv2.Canny, 0-255", int),
        "high": Option(200, "upper hysteresis threshold of cv2.Canny, 0-255, above low", int),
    }

    def check(self) -> None:
        low, high = self.opts["low"], self.opts["high"]
        if not (0 <= low < high <= 255):
            raise ControlError(f"--control-opt canny.low={low} canny.high={high}: need 0 <= low < high <= 255")

    def frame(self, rgb: np.ndarray) -> np.ndarray:
        edges = cv2.Canny(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), self.opts["low"], self.opts["high"])
        return np.repeat(edges[:, :, None], 3, axis=2)
