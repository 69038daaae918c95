"""Write the planned windows of one source as clips: one decode pass, one encode per clip.

The source is decoded front to back (seeking only across long unused gaps), and
each decoded frame that a window needs is scaled to cover the bucket, rotated
upright, centre-cropped and handed to that window's encoder. Which source frame
feeds which output frame was decided in ``plan``; nothing here resamples time,
so the clip holds exactly N frames at exactly the output rate.

A clip is written under a temporary name and renamed when complete, so a killed
run never leaves a half-written clip under a final name.
"""
from __future__ import annotations

from collections import defaultdict
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .bucket import Fit
from .media import atomic_replace
from .plan import Window

SEEK_GAP_S = 3.0  # decode through gaps shorter than this; seek across longer ones


class ClipWriter:
    def __init__(self, path: Path, fit: Fit, fps: float, crf: int, preset: str):
        self.final = path
        self.tmp = path.with_name(path.name + ".part")
        self.container = av.open(str(self.tmp), "w", format="mp4")
        rate = Fraction(fps).limit_denominator(1001)
        s = self.container.add_stream("libx264", rate=rate)
        s.width, s.height, s.pix_fmt = fit.width, fit.height, "yuv420p"
        s.time_base = 1 / rate
        s.options = {"crf": str(crf), "preset": preset}
        self.stream = s
        self.count = 0

    def write(self, rgb: np.ndarray) -> None:
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts = self.count
        self.count += 1
        self.container.mux(self.stream.encode(frame))

    def close(self) -> Path:
        self.container.mux(self.stream.encode(None))
        self.container.close()
        atomic_replace(self.tmp, self.final)
        return self.final

    def abort(self) -> None:
        try:
            self.container.close()
        except Exception:  # noqa: BLE001 - cleanup of a clip that failed anyway
            pass
        self.tmp.unlink(missing_ok=True)


def to_bucket(frame: av.VideoFrame, fit: Fit, rotation: int) -> np.ndarray:
    """Scale to cover, turn upright, centre-crop: an RGB array of the bucket's exact size."""
    sw, sh = (fit.scaled_h, fit.scaled_w) if rotation in (90, 270) else (fit.scaled_w, fit.scaled_h)
    rgb = frame.to_ndarray(width=sw, height=sh, format="rgb24", interpolation="BICUBIC")
    if rotation:
        rgb = np.rot90(rgb, k=-rotation // 90)  # rotation is clockwise, rot90 turns counter-clockwise
    crop = rgb[fit.crop_y:fit.crop_y + fit.height, fit.crop_x:fit.crop_x + fit.width]
    return np.ascontiguousarray(crop)


def write_clips(source: str, pts: np.ndarray, time_base: float, windows: list[Window],
                paths: list[Path], fit: Fit, rotation: int, fps: float, crf: int, preset: str,
                on_frame=None) -> dict[int, str]:
    """Encode each window to its path. Returns {window position: error} for clips that failed;
    every other clip exists, complete, under its final name."""
    errors: dict[int, str] = {}
    need: dict[int, list[tuple[int, int]]] = defaultdict(list)  # pts -> [(window, out pos)]
    for wi, w in enumerate(windows):
        for pos, idx in enumerate(w.src_frames):
            need[int(pts[idx])].append((wi, pos))
    if not need:
        return errors
    remaining = {wi: len(w.src_frames) for wi, w in enumerate(windows)}
    writers: dict[int, ClipWriter] = {}
    pending: dict[int, dict[int, np.ndarray]] = defaultdict(dict)  # out-of-order guard
    wanted = sorted(need)
    cursor = 0
    try:
        with av.open(source, metadata_errors="ignore") as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            decoded_up_to = None
            while cursor < len(wanted):
                target = wanted[cursor]
                if decoded_up_to is None or (target - decoded_up_to) * time_base > SEEK_GAP_S:
                    container.seek(int(target), stream=stream, backward=True)
                for frame in container.decode(stream):
                    if frame.pts is None:
                        continue
                    decoded_up_to = frame.pts
                    if frame.pts < target:
                        continue
                    if frame.pts in need:
                        rgb = to_bucket(frame, fit, rotation)
                        for wi, pos in need[frame.pts]:
                            _deliver(wi, pos, rgb, windows, paths, fit, fps, crf, preset,
                                     writers, pending, remaining)
                        if on_frame:
                            on_frame(len(need[frame.pts]))
                    while cursor < len(wanted) and wanted[cursor] <= frame.pts:
                        cursor += 1
                    if cursor >= len(wanted):
                        break
                    if (wanted[cursor] - frame.pts) * time_base > SEEK_GAP_S:
                        break  # seek forward instead of decoding the gap
                else:
                    break  # end of stream
    except av.error.FFmpegError as e:
        for wi in range(len(windows)):
            if remaining.get(wi, 0) > 0:
                errors[wi] = f"decoding the source failed at this clip ({e}); the source is damaged"
    for wi, left in remaining.items():
        if left > 0 and wi not in errors:
            errors[wi] = (f"{left} of {len(windows[wi].src_frames)} source frames could not be "
                          "decoded; the source is truncated or damaged here")
    for wi, writer in writers.items():
        if wi in errors:
            writer.abort()
    return errors


def _deliver(wi, pos, rgb, windows, paths, fit, fps, crf, preset, writers, pending, remaining):
    if wi not in writers:
        paths[wi].parent.mkdir(parents=True, exist_ok=True)
        writers[wi] = ClipWriter(paths[wi], fit, fps, crf, preset)
    w = writers[wi]
    pending[wi][pos] = rgb
    while w.count in pending[wi]:
        w.write(pending[wi].pop(w.count))
        remaining[wi] -= 1
    if remaining[wi] == 0:
        w.close()
        del writers[wi]


def cleanup_partials(root: Path) -> int:
    """Remove ``*.part`` files a killed run left behind; returns how many."""
    n = 0
    if root.exists():
        for p in root.rglob("*.part"):
            p.unlink(missing_ok=True)
            n += 1
    return n

