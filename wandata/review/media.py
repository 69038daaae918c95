"""Posters and frame strips for the review page, made once with ffmpeg and cached in the dataset.

Each picture is a JPEG under ``DATASET/.wandata/review/``, named by a hash of what it shows (the
clip's content identity, or the source's content hash), so a re-ingested clip gets new pictures
and nothing read from the manifest ever becomes part of a path. A clip's pictures come from its
file inside the dataset; a window dropped before encoding has no file, so its strip is drawn
from the source video at the window's times, and only when that file is still the one ingested
(same size; ``store.source_file``). Nothing is written outside the dataset.
"""
from __future__ import annotations

import hashlib
import subprocess
import threading
from pathlib import Path

from wandata import atomic
from wandata.confine import OutsideRoot, inside
from wandata.dataset import review
from wandata.dataset.records import ClipRecord, SourceRecord
from wandata.media.tools import MediaToolError, ffmpeg_exe

CACHE_DIR = ".wandata/review"
POSTER_W, STRIP_W, STRIP_N = 320, 160, 5
TIMEOUT_S = 60


class Media:
    def __init__(self, dataset: Path, workers: int = 2):
        self.dataset = Path(dataset)
        # ffmpeg runs are few and short, but a page of 60 posters on 2 cores must not start 60.
        self._slots = threading.BoundedSemaphore(workers)

    def cache(self) -> Path:
        """The cache folder, made if needed; refused (OutsideRoot) if a link leads it out of the dataset."""
        folder = inside(self.dataset, CACHE_DIR, "review cache folder")
        folder.mkdir(parents=True, exist_ok=True)
        return inside(self.dataset, CACHE_DIR, "review cache folder")

    def _cached(self, key: str, make) -> Path | None:
        try:
            folder = self.cache()
        except OutsideRoot:
            return None
        path = folder / (hashlib.sha256(key.encode("utf-8")).hexdigest()[:40] + ".jpg")
        if path.is_file() and not path.is_symlink():
            return path
        with self._slots:
            if path.is_file():
                return path
            data = make()
            if not data:
                return None
            atomic.write_bytes(path, data)
        return path

    def poster(self, clip: ClipRecord, file: Path | None, source: Path | None) -> Path | None:
        """One frame from the middle of the clip (or of its window in the source)."""
        if file is not None:
            mid = clip.num_frames / clip.fps / 2 if clip.fps else 0.0
            return self._cached(f"poster:{review.identity(clip)}", lambda: grab(file, [mid], POSTER_W))
        span = _span(clip)
        if source is None or span is None:
            return None
        return self._cached(f"poster-src:{review.identity(clip)}",
                            lambda: grab(source, [(span[0] + span[1]) / 2], POSTER_W))

    def strip(self, clip: ClipRecord, file: Path | None, source: Path | None) -> Path | None:
        """``STRIP_N`` frames spread over the clip, side by side."""
        if file is not None:
            dur = clip.num_frames / clip.fps if clip.fps else 0.0
            return self._cached(f"strip:{review.identity(clip)}", lambda: grab(file, _spread(0.0, dur), STRIP_W))
        span = _span(clip)
        if source is None or span is None:
            return None
        return self._cached(f"strip-src:{review.identity(clip)}", lambda: grab(source, _spread(*span), STRIP_W))

    def source_strip(self, src: SourceRecord, source: Path | None) -> Path | None:
        if source is None:
            return None
        dur = src.duration_s if src.duration_s > 0 else 1.0
        return self._cached(f"source:{src.content_hash or src.source_id}:{src.size_bytes}",
                            lambda: grab(source, _spread(0.0, dur), STRIP_W))


def _span(c: ClipRecord) -> tuple[float, float] | None:
    if c.end_s > c.start_s:
        return c.start_s, c.end_s
    if c.shot_end_s > c.shot_start_s:   # a shot too short for a window: show the shot
        return c.shot_start_s, c.shot_end_s
    return None


def _spread(start: float, end: float, n: int = STRIP_N) -> list[float]:
    step = max(end - start, 0.0) / n
    return [start + (i + 0.5) * step for i in range(n)]


def grab(path: Path, times: list[float], width: int) -> bytes | None:
    """A JPEG of the frames at ``times`` (seconds) of ``path``, each ``width`` wide, side by side;
    None if ffmpeg cannot make it (a damaged or unreadable file)."""
    try:
        exe = ffmpeg_exe()
    except MediaToolError:
        return None
    args = [exe, "-nostdin", "-v", "error"]
    for t in times:
        # Input seeking per frame: each one decodes from the keyframe before it, not from the start.
        args += ["-ss", f"{max(t, 0.0):.3f}", "-i", "file:" + str(path)]
    chains = ";".join(f"[{i}:v:0]scale={width}:-2,setsar=1,format=yuvj420p[v{i}]" for i in range(len(times)))
    if len(times) > 1:
        chains += ";" + "".join(f"[v{i}]" for i in range(len(times))) + f"hstack=inputs={len(times)}[out]"
    else:
        chains += ";[v0]null[out]"
    args += ["-filter_complex", chains, "-map", "[out]", "-frames:v", "1", "-c:v", "mjpeg", "-q:v", "5",
             "-f", "image2pipe", "pipe:1"]
    try:
        done = subprocess.run(args, capture_output=True, timeout=TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 and done.stdout[:2] == b"\xff\xd8" else None
