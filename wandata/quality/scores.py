"""Per-window quality scores, measured before a window is encoded (docs/quality.md).

Scores are computed from the window's bucket-sized yuv420p pictures, which
``ingest.stream.ClipMaker`` holds in memory right before encoding: scoring costs no
extra decode, and a window that a filter drops is never encoded. Everything is
measured on luma scaled to a fixed analysis width, so one threshold means the
same thing for every bucket size. The filters that read the scores are in
``filters``; the perceptual hashes are compared in ``duplicates``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

ANALYSIS_W = 320   # sharpness, exposure, text: detail finer than this is mostly grain
FLOW_W = 160       # optical flow: motion, not detail, so small frames suffice
FLOW_GAP_S = 0.25  # flow between frames this far apart: more displacement than noise
SAMPLES = 5        # frames sampled for sharpness, exposure, text and hashes


@dataclass
class Scores:
    motion: float = -1.0       # median optical-flow speed, % of frame width per second
    sharpness: float = -1.0    # median variance of the Laplacian of luma
    brightness: float = -1.0   # median mean luma (0-255 code values)
    contrast: float = -1.0     # median standard deviation of luma
    text: float = -1.0         # fraction of the frame covered by static text-like regions
    phash: list[str] = field(default_factory=list)  # 64-bit DCT hash per sampled frame, hex


def _small(y: np.ndarray, width: int) -> np.ndarray:
    h = max(8, round(y.shape[0] * width / y.shape[1]))
    return cv2.resize(y, (width, h), interpolation=cv2.INTER_AREA)


def _sample(n: int, k: int = SAMPLES) -> list[int]:
    return sorted({round(i * (n - 1) / max(k - 1, 1)) for i in range(k)}) if n else []


def motion(lumas: list[np.ndarray], fps: float) -> float:
    """How fast the picture moves: mean Farneback flow magnitude, median over frame pairs
    ``FLOW_GAP_S`` apart, as % of the frame width per second. Flow, unlike raw frame
    differences, is not fooled by sensor grain on a locked-off shot."""
    gap = max(1, round(FLOW_GAP_S * fps))
    small = [_small(y, FLOW_W) for y in lumas[::gap]]
    speeds = []
    for a in range(len(small) - 1):
        flow = cv2.calcOpticalFlowFarneback(small[a], small[a + 1], None, 0.5, 3, 15, 3, 5, 1.2, 0)
        px = float(np.mean(np.hypot(flow[..., 0], flow[..., 1])))
        speeds.append(100.0 * px / FLOW_W * fps / gap)
    return float(np.median(speeds)) if speeds else -1.0  # too short to tell: not measured


def sharpness(y: np.ndarray) -> float:
    return float(cv2.Laplacian(y, cv2.CV_64F).var())


def text_area(ys: list[np.ndarray]) -> float:
    """Fraction of the frame covered by text-like regions that stay in place.

    Burned-in text (titles, subtitles, lower thirds) is dense, high-contrast edges in
    wide, short boxes that do not move with the picture. Edges present at the same
    pixel in every sampled frame (pixel-wise minimum of the morphological gradient)
    are the overlay; a moving background drops out. On a still clip the whole
    picture is "static", so textured stills can score; the static filter drops those.
    """
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    stable = None
    for y in ys:
        g = cv2.morphologyEx(y, cv2.MORPH_GRADIENT, kernel)
        stable = g if stable is None else np.minimum(stable, g)
    if stable is None:
        return 0.0
    h, w = stable.shape
    # Letters are drawn to be read on any background: steps of 80+ code values at their edges.
    edges = (stable > 80).astype(np.uint8)
    # Join the strokes of a line of characters into one blob.
    lines = cv2.morphologyEx(edges, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (9, 3)))
    _, _, stats, _ = cv2.connectedComponentsWithStats(lines, connectivity=8)
    area = 0
    for x0, y0, bw, bh, _ in stats[1:]:
        box = edges[y0:y0 + bh, x0:x0 + bw]
        if 0.015 * h <= bh <= 0.3 * h and bw >= 1.5 * bh and box.mean() >= 0.2:
            area += bw * bh
    return float(area / (h * w))


def phash(y: np.ndarray) -> str:
    """The classic perceptual hash: signs of the 8x8 lowest DCT frequencies of a 32x32
    thumbnail against their median. Survives re-encoding, rescaling and small shifts."""
    small = cv2.resize(y, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].flatten()
    bits = low > np.median(low[1:])
    return f"{int(''.join('1' if b else '0' for b in bits), 2):016x}"


def score(pictures, fps: float) -> Scores:
    """Scores of one window from its pictures (``media.picture.Picture``, luma plane ``y``)."""
    lumas = [p.y for p in pictures]
    picks = [_small(lumas[i], ANALYSIS_W) for i in _sample(len(lumas))]
    return Scores(
        motion=round(motion(lumas, fps), 4),
        sharpness=round(float(np.median([sharpness(y) for y in picks])), 2),
        brightness=round(float(np.median([y.mean() for y in picks])), 2),
        contrast=round(float(np.median([y.std() for y in picks])), 2),
        text=round(text_area(picks), 4),
        phash=[phash(y) for y in picks],
    )


def copy_scores(s: Scores, record) -> None:
    for name in ("motion", "sharpness", "brightness", "contrast", "text", "phash"):
        setattr(record, name, getattr(s, name))
