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

import subprocess
from collections import defaultdict
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .bucket import Fit
from .media import atomic_replace, ffmpeg_exe
from .plan import Window

SEEK_GAP_S = 3.0  # decode through gaps shorter than this; seek across longer ones


class ClipWriter:
    """One clip: raw RGB frames piped into an ``ffmpeg`` process running libx264.

    A separate process rather than in-process PyAV encoding, for two measured reasons:
    libx264 inside PyAV produced different bytes from run to run on a loaded machine
    (a resumed run must reproduce a clip exactly; the ffmpeg program did, 10 of 10),
    and the encoder then runs in parallel with the decoding in this process.
    """

    def __init__(self, path: Path, fit: Fit, fps: float, crf: int, preset: str):
        self.final = path
        self.tmp = path.with_name(path.name + ".part")
        rate = Fraction(fps).limit_denominator(1001)
        argv = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-y",
                "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{fit.width}x{fit.height}",
                "-r", str(rate), "-i", "pipe:0",
                "-an", "-c:v", "libx264", "-crf", str(crf), "-preset", preset, "-pix_fmt", "yuv420p",
                "-movflags", "+faststart", "-f", "mp4", str(self.tmp)]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        self.count = 0

    def write(self, rgb: np.ndarray) -> None:
        self.proc.stdin.write(memoryview(np.ascontiguousarray(rgb)).cast("B"))
        self.count += 1

    def close(self) -> Path:
        self.proc.stdin.close()
        err = self.proc.stderr.read().decode(errors="replace").strip()
        if self.proc.wait() != 0:
            self.tmp.unlink(missing_ok=True)
            raise RuntimeError(f"ffmpeg could not encode {self.final.name}: {err or 'no message'}")
        atomic_replace(self.tmp, self.final)
        return self.final

    def abort(self) -> None:
        try:
            self.proc.kill()
            self.proc.wait()
        finally:
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
    # Decoded frames arrive in presentation order and each window's output positions rise with
    # it, so handing every frame to its windows as it comes writes each clip in order.
    need: dict[int, list[int]] = defaultdict(list)  # source pts -> windows, once per use
    for wi, w in enumerate(windows):
        for idx in w.src_frames:
            need[int(pts[idx])].append(wi)
    left = {wi: len(w.src_frames) for wi, w in enumerate(windows)}
    writers: dict[int, ClipWriter] = {}
    errors: dict[int, str] = {}

    def deliver(wi: int, rgb: np.ndarray) -> None:
        if wi in errors:
            return
        try:
            if wi not in writers:
                paths[wi].parent.mkdir(parents=True, exist_ok=True)
                writers[wi] = ClipWriter(paths[wi], fit, fps, crf, preset)
            writers[wi].write(rgb)
            left[wi] -= 1
            if left[wi] == 0:
                writers.pop(wi).close()
        except (OSError, RuntimeError) as e:
            errors[wi] = f"encoding failed: {e}"
            if wi in writers:
                writers.pop(wi).abort()

    try:
        for frame in _decode_wanted(source, sorted(need), time_base):
            rgb = to_bucket(frame, fit, rotation)
            for wi in need[frame.pts]:
                deliver(wi, rgb)
            if on_frame:
                on_frame(len(need[frame.pts]))
    except av.error.FFmpegError as e:
        for wi in range(len(windows)):
            if left[wi] > 0 and wi not in errors:
                errors[wi] = f"decoding the source failed inside this clip ({e}); the source is damaged"
    finally:
        for wi in list(writers):  # unfinished: interrupted, or frames missing from the source
            writers.pop(wi).abort()
    for wi, n in left.items():
        if n > 0 and wi not in errors:
            errors[wi] = (f"{n} of {len(windows[wi].src_frames)} source frames could not be "
                          "decoded; the source is truncated or damaged here")
    return errors


def _decode_wanted(source: str, wanted: list[int], time_base: float):
    """Yield the decoded frames whose pts are in ``wanted`` (sorted), seeking across long gaps."""
    cursor = 0
    with av.open(source, metadata_errors="ignore") as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        while cursor < len(wanted):
            container.seek(int(wanted[cursor]), stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.pts is None or frame.pts < wanted[cursor]:
                    continue
                if frame.pts == wanted[cursor]:
                    yield frame
                while cursor < len(wanted) and wanted[cursor] <= frame.pts:
                    cursor += 1
                if cursor >= len(wanted) or (wanted[cursor] - frame.pts) * time_base > SEEK_GAP_S:
                    break  # done, or a long gap: seek forward instead of decoding it
            else:
                return  # end of stream: the remaining frames do not exist


def cleanup_partials(root: Path) -> int:
    """Remove ``*.part`` files a killed run left behind; returns how many."""
    n = 0
    if root.exists():
        for p in root.rglob("*.part"):
            p.unlink(missing_ok=True)
            n += 1
    return n

