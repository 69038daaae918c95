"""Decode a written clip again and check it against the plan.

Clips are encoded by the ``ffmpeg`` program (libx264); they are decoded here by
PyAV's own FFmpeg libraries, in-process: a second, independently built decoder,
reading the file as a trainer's loader will. It reports the frame count, the
size, the frame timing and a digest of the decoded pictures, so a clip is kept
only if it is exactly N frames of WxH at a constant output rate, and two runs can
be compared picture for picture.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from wandata.media import threads


@dataclass
class Decoded:
    frames: int = 0
    width: int = 0
    height: int = 0
    fps: float = 0.0
    constant_rate: bool = False
    digest: str = ""      # of every decoded picture's visible pixels, in order
    error: str = ""


def decode_clip(path: Path) -> Decoded:
    out = Decoded()
    digest = hashlib.blake2b(digest_size=16)
    pts = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            threads.apply_to_stream(stream)
            tb = stream.time_base
            for frame in container.decode(stream):
                out.width, out.height = frame.width, frame.height
                pts.append(frame.pts)
                for plane in frame.planes:
                    # Only the visible bytes: the padding at the end of each row is undefined.
                    rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
                    digest.update(np.ascontiguousarray(rows[:, :plane.width]).tobytes())
    except (av.error.FFmpegError, IndexError) as e:
        out.error = str(e) if not isinstance(e, IndexError) else "no video stream"
    out.frames = len(pts)
    out.digest = digest.hexdigest() if pts else ""
    if len(pts) > 1 and None not in pts and tb:
        deltas = {b - a for a, b in zip(pts, pts[1:])}
        out.constant_rate = len(deltas) == 1
        out.fps = float(1 / (tb * min(deltas))) if min(deltas) > 0 else 0.0
    elif len(pts) == 1:
        out.constant_rate = True
    return out


def check(path: Path, frames: int, width: int, height: int, fps: float) -> tuple[Decoded, str]:
    """Decode ``path``; return the result and '' if it matches, else what is wrong."""
    d = decode_clip(path)
    if d.frames == 0:
        return d, f"clip does not decode: {d.error or 'no frames'}"
    problems = []
    if d.frames != frames:
        problems.append(f"{d.frames} frames instead of {frames}")
    if (d.width, d.height) != (width, height):
        problems.append(f"size {d.width}x{d.height} instead of {width}x{height}")
    if frames > 1 and (not d.constant_rate or abs(d.fps - fps) > 1e-3):
        problems.append(f"frame rate {d.fps:.3f} (constant: {d.constant_rate}) instead of {fps:g}")
    if d.error:
        problems.append(f"decoder reported: {d.error}")
    return d, "; ".join(problems)
