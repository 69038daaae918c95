"""K frames sampled across a clip, for captioners that look at images."""
from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np


def frame_indices(n: int, k: int) -> list[int]:
    """K indices spread evenly over n frames, each at the middle of its share,
    so the first and last frames (often mid-transition) are not favoured."""
    if n <= 0 or k <= 0:
        return []
    if k >= n:
        return list(range(n))
    return [min(n - 1, int((i + 0.5) * n / k)) for i in range(k)]


def count_frames(path: Path) -> int:
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        if stream.frames:
            return int(stream.frames)
        return sum(1 for _ in c.decode(stream))


def sample_frames(path: Path, k: int, *, max_side: int = 0, num_frames: int = 0) -> list[np.ndarray]:
    """RGB uint8 arrays (H, W, 3); ``num_frames`` saves a counting pass when the
    manifest already knows it. Raises ``ValueError`` if the clip cannot be read."""
    path = Path(path)
    n = num_frames or count_frames(path)
    wanted = set(frame_indices(n, k))
    out: list[np.ndarray] = []
    with av.open(str(path)) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i in wanted:
                out.append(_fit(frame.to_ndarray(format="rgb24"), max_side))
                if len(out) == len(wanted):
                    break
    if not out:
        raise ValueError(f"no frame could be decoded from {path}")
    return out


def _fit(img: np.ndarray, max_side: int) -> np.ndarray:
    h, w = img.shape[:2]
    if max_side <= 0 or max(h, w) <= max_side:
        return img
    s = max_side / max(h, w)
    return cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def to_jpeg(img: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def write_jpegs(frames: list[np.ndarray], folder: Path, stem: str = "frame") -> list[Path]:
    paths = []
    for i, img in enumerate(frames):
        p = Path(folder) / f"{stem}_{i:02d}.jpg"
        p.write_bytes(to_jpeg(img))
        paths.append(p)
    return paths
