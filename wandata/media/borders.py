"""Find letterbox / pillarbox bars: black rows and columns at the edges of the picture.

A few frames spread over the source are decoded (seeking, so the cost does not grow
with the file's length). A row or column is a bar when its brightest pixel stays
below ``luma`` in every sample: real dark scenes have a highlight somewhere along a
whole row, or at least in one of the samples, while bars never light up. Known limit:
a bar that holds subtitles lights up and is not a bar; then that axis is not cropped.
"""
from __future__ import annotations

import av
import numpy as np

from wandata import storage

SAMPLES = 5
MIN_BAR = 0.01      # thinner bars (encoder edge lines) are left alone
MIN_CONTENT = 0.4   # less left than this is a dark picture, not bars
MARGIN = 2          # pixels given up on a barred side: the bar's edge blurs in compression


def detect(path: str, rotation: int, duration_s: float, luma: int = 32) -> tuple[int, int, int, int] | None:
    """``(x, y, w, h)`` of the picture inside the bars, in displayed (upright) pixels, or None."""
    lumas = _samples(path, rotation, duration_s)
    if not lumas:
        return None
    peak = np.max(np.stack(lumas), axis=0)
    top, bottom = _span(peak.max(axis=1), luma)
    left, right = _span(peak.max(axis=0), luma)
    h, w = peak.shape
    if bottom - top < MIN_CONTENT * h or right - left < MIN_CONTENT * w:
        return None
    top, bottom = _trim(top, bottom, h)
    left, right = _trim(left, right, w)
    if (left, top, right, bottom) == (0, 0, w, h):
        return None
    return left, top, right - left, bottom - top


def _span(profile: np.ndarray, luma: int) -> tuple[int, int]:
    lit = np.flatnonzero(profile > luma)
    return (int(lit[0]), int(lit[-1]) + 1) if len(lit) else (0, 0)


def _trim(lo: int, hi: int, size: int) -> tuple[int, int]:
    """Bars come in pairs (letterbox: top and bottom; pillarbox: left and right): a dark band
    on one side only is a night sky or a dark floor, and cropping it would cut the picture.
    Hairline bars are ignored; past real ones, step ``MARGIN`` further in."""
    if lo >= MIN_BAR * size and size - hi >= MIN_BAR * size:
        return lo + MARGIN, hi - MARGIN
    return 0, size


def _samples(path: str, rotation: int, duration_s: float) -> list[np.ndarray]:
    out = []
    try:
        with storage.reading(path) as f, av.open(f, metadata_errors="ignore") as c:
            stream = c.streams.video[0]
            tb = float(stream.time_base or 0) or 1e-6
            start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
            for k in range(SAMPLES):
                t = start + duration_s * (k + 0.5) / SAMPLES
                c.seek(int(t / tb), stream=stream, backward=True, any_frame=False)
                frame = next(c.decode(stream), None)
                if frame is None:
                    continue
                # Luma only; "gray" also takes odd sizes and 4:4:4 / 10-bit sources.
                y = frame.to_ndarray(format="gray")
                out.append(np.rot90(y, k=-rotation // 90) if rotation else y)
    except Exception:  # noqa: BLE001 - no samples means no crop, never a failed source
        return out
    return out
