"""Choose each source's bucket and the cover-scale + centre-crop that fills it exactly.

Landscape sources go to the landscape bucket, portrait to the portrait one: the
bucket whose aspect ratio is closest (in log space, so 2:1 and 1:2 are equally
far from 1:1). The source is scaled so that it covers the bucket, then the
middle is cropped: no bars, no distortion, the largest possible view.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Fit:
    width: int           # bucket
    height: int
    scaled_w: int        # source size after cover scaling (even, >= bucket)
    scaled_h: int
    crop_x: int
    crop_y: int
    scale: float

    @property
    def name(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def orientation(self) -> str:
        if self.width == self.height:
            return "square"
        return "landscape" if self.width > self.height else "portrait"


def choose_bucket(w: int, h: int, buckets) -> tuple[int, int]:
    ar = math.log(w / h)
    return min(buckets, key=lambda b: (abs(math.log(b[0] / b[1]) - ar), -b[0] * b[1]))


def fit(w: int, h: int, buckets, box: tuple[int, int, int, int] | None = None) -> Fit:
    """``w``, ``h``: the source as displayed (after rotation). ``box``: ``(x, y, w, h)`` of the
    picture inside black bars (``borders.detect``); the bucket and scale are chosen for it."""
    if box:
        return _fit_inside(w, h, box, buckets)
    bw, bh = choose_bucket(w, h, buckets)
    scale = max(bw / w, bh / h)
    # Round up to even sizes (chroma subsampling) but never below the bucket.
    sw = max(bw, int(math.ceil(w * scale / 2)) * 2)
    sh = max(bh, int(math.ceil(h * scale / 2)) * 2)
    # Even crop offsets keep the 2x2 chroma blocks aligned.
    return Fit(bw, bh, sw, sh, (sw - bw) // 4 * 2, (sh - bh) // 4 * 2, scale)


def _fit_inside(w: int, h: int, box, buckets) -> Fit:
    """Cover-scale the whole frame so that the box covers the bucket, and put the crop inside
    the box: the bars are cut in the same scale-and-crop step that makes every picture (no
    second resampling pass), and never reach a clip."""
    x0, y0, cw, ch = box
    bw, bh = choose_bucket(cw, ch, buckets)
    # 2 spare pixels on each axis, so an even (chroma-aligned) crop always fits inside the box.
    scale = max((bw + 2) / cw, (bh + 2) / ch)
    sw = max(bw, int(math.ceil(w * scale / 2)) * 2)
    sh = max(bh, int(math.ceil(h * scale / 2)) * 2)
    return Fit(bw, bh, sw, sh, _offset(x0, cw, bw, scale, sw), _offset(y0, ch, bh, scale, sh), scale)


def _offset(start: int, size: int, out: int, scale: float, scaled: int) -> int:
    """Even offset of a centred crop of ``out`` pixels inside [start, start + size) * scale."""
    lo = math.ceil(start * scale)
    hi = math.floor((start + size) * scale) - out
    centre = int(start * scale + (size * scale - out) / 2) // 2 * 2
    x = min(max(centre, lo + lo % 2), hi - hi % 2) if lo <= hi else lo + lo % 2
    return max(0, min(x, (scaled - out) // 2 * 2))
