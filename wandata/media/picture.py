"""Decoded frames to bucket-sized pictures, and the colour tags that go with them.

``to_bucket`` scales a decoded frame to cover the bucket, turns it upright and
centre-crops it, staying in yuv420p: no RGB round trip, so the source's colour
matrix is kept, and the clip is tagged with it (``colour_args``).
"""
from __future__ import annotations

from dataclasses import dataclass

import av
import numpy as np

from wandata.media.bucket import Fit

# FFmpeg's names for the colour properties a decoded frame carries (AVColorSpace etc.).
_MATRIX = {1: "bt709", 5: "bt470bg", 6: "smpte170m", 9: "bt2020nc"}
_PRIMARIES = {1: "bt709", 5: "bt470bg", 6: "smpte170m", 9: "bt2020"}
_TRANSFER = {1: "bt709", 6: "smpte170m", 14: "bt2020-10", 16: "smpte2084", 18: "arib-std-b67"}


@dataclass(frozen=True)
class Picture:
    """One bucket-sized yuv420p picture as three planes."""
    y: np.ndarray
    u: np.ndarray
    v: np.ndarray

    def tobytes(self) -> bytes:
        return self.y.tobytes() + self.u.tobytes() + self.v.tobytes()

    def small_rgb(self, w: int, h: int) -> np.ndarray:
        """A tiny RGB version for the shot detectors."""
        import cv2

        y = cv2.resize(self.y, (w, h), interpolation=cv2.INTER_AREA)
        u = cv2.resize(self.u, (w, h), interpolation=cv2.INTER_AREA)
        v = cv2.resize(self.v, (w, h), interpolation=cv2.INTER_AREA)
        # Approximate (BT.601, full swing): the detectors compare frames with each other.
        return cv2.cvtColor(np.dstack([y, u, v]), cv2.COLOR_YUV2RGB)


def to_bucket(frame: av.VideoFrame, fit: Fit, rotation: int) -> Picture:
    """Scale to cover, turn upright, centre-crop: a picture of the bucket's exact size."""
    sw, sh = (fit.scaled_h, fit.scaled_w) if rotation in (90, 270) else (fit.scaled_w, fit.scaled_h)
    a = frame.to_ndarray(width=sw, height=sh, format="yuv420p", interpolation="AREA").reshape(-1)
    # Split by element count: when sh / 2 is odd a chroma plane does not end on a row of ``a``.
    n, c = sh * sw, (sh // 2) * (sw // 2)
    planes = [a[:n].reshape(sh, sw), a[n:n + c].reshape(sh // 2, sw // 2),
              a[n + c:n + 2 * c].reshape(sh // 2, sw // 2)]
    if rotation:
        planes = [np.rot90(p, k=-rotation // 90) for p in planes]  # rotation is clockwise
    cx, cy = fit.crop_x, fit.crop_y  # even, so the chroma planes crop on the same pixels
    out = [planes[0][cy:cy + fit.height, cx:cx + fit.width]]
    out += [p[cy // 2:(cy + fit.height) // 2, cx // 2:(cx + fit.width) // 2] for p in planes[1:]]
    return Picture(*(np.ascontiguousarray(p) for p in out))


def tiny_rgb(frame: av.VideoFrame, fit: Fit, rotation: int, size: tuple[int, int]) -> np.ndarray:
    """A tiny RGB copy of what ``to_bucket`` would show, taken from every decoded frame for the
    source-rate cut rule. Scaling a whole 1080p frame costs about a millisecond, a tenth of
    decoding it, so large yuv420p frames are read plane by plane, every ``step``-th pixel (still
    four or more samples per output pixel, averaged: 0.1-0.3 ms); small sources and other pixel
    formats are converted whole."""
    import cv2

    w, h = size
    fw, fh = frame.width, frame.height
    upright = (fh, fw) if rotation in (90, 270) else (fw, fh)
    r = upright[0] / fit.scaled_w            # source pixels per bucket pixel
    x0, y0 = fit.crop_x * r, fit.crop_y * r  # the bucket's crop in upright source pixels
    cw, ch = fit.width * r, fit.height * r
    step = int(min(cw / w, ch / h) / 4) // 2 * 2  # even: chroma samples the same pixels
    if step >= 2 and frame.format.name in ("yuv420p", "yuvj420p"):
        y = _plane(frame, 0, fw, fh)[::step, ::step]
        u = _plane(frame, 1, (fw + 1) // 2, (fh + 1) // 2)[::step // 2, ::step // 2]
        v = _plane(frame, 2, (fw + 1) // 2, (fh + 1) // 2)[::step // 2, ::step // 2]
        n = min(len(y), len(u)), min(y.shape[1], u.shape[1])
        yuv = np.dstack([p[:n[0], :n[1]] for p in (y, u, v)])
        rgb = cv2.cvtColor(np.ascontiguousarray(yuv), cv2.COLOR_YUV2RGB)
    else:  # a small source (every pixel is cheap), or a rarer pixel format
        step = max(1, step)
        rgb = frame.to_ndarray(width=max(1, fw // step), height=max(1, fh // step), format="rgb24",
                               interpolation="FAST_BILINEAR")
    if rotation:
        rgb = np.rot90(rgb, k=-rotation // 90)
    sy, sx = rgb.shape[0] / upright[1], rgb.shape[1] / upright[0]
    crop = rgb[int(y0 * sy):max(int(y0 * sy) + 1, round((y0 + ch) * sy)),
               int(x0 * sx):max(int(x0 * sx) + 1, round((x0 + cw) * sx))]
    return cv2.resize(np.ascontiguousarray(crop), (w, h), interpolation=cv2.INTER_AREA)


def _plane(frame: av.VideoFrame, i: int, w: int, h: int) -> np.ndarray:
    """Plane ``i`` of a planar frame as an array view (rows padded to its line size)."""
    p = frame.planes[i]
    return np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[:h, :w]


def colour_args(frame: av.VideoFrame) -> list[str]:
    """Tag the clip with the source's colour properties so players convert it as the source."""
    args = []
    for flag, table, value in (("-colorspace", _MATRIX, frame.colorspace),
                               ("-color_primaries", _PRIMARIES, frame.color_primaries),
                               ("-color_trc", _TRANSFER, frame.color_trc)):
        name = table.get(int(value or 0))
        if name:
            args += [flag, name]
    return args
