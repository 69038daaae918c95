"""Decode every written clip with the ffmpeg program and check it against the plan.

This is a different decoder from the PyAV one that wrote the clip, reading the
file the way a trainer's loader will. It reports the frame count, the size, the
frame timing and an MD5 per decoded frame (``-f framemd5``), so a clip is kept
only if it is exactly N frames of WxH at a constant output rate.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from .media import run_ffmpeg


@dataclass
class Decoded:
    frames: int = 0
    width: int = 0
    height: int = 0
    fps: float = 0.0
    constant_rate: bool = False
    md5: list[str] = field(default_factory=list)
    error: str = ""


def decode_clip(path: Path, timeout: float = 120) -> Decoded:
    # -autorotate 0 is not needed: clips carry no rotation; decoding as a loader would.
    proc = run_ffmpeg(["-v", "error", "-i", str(path), "-map", "0:v:0", "-f", "framemd5",
                       "-pix_fmt", "yuv420p", "-"], timeout=timeout)
    out = Decoded()
    if proc.returncode != 0:
        lines = proc.stderr.decode(errors="replace").strip().splitlines()
        out.error = lines[-1] if lines else f"ffmpeg exited with status {proc.returncode}"
        return out
    tb = None
    pts = []
    for line in proc.stdout.decode().splitlines():
        if line.startswith("#tb 0:"):
            tb = Fraction(line.split(":", 1)[1].strip())
        elif m := re.match(r"#dimensions 0:\s*(\d+)x(\d+)", line):
            out.width, out.height = int(m.group(1)), int(m.group(2))
        elif line and not line.startswith("#"):
            parts = [p.strip() for p in line.split(",")]
            pts.append(int(parts[2]))
            out.md5.append(parts[5])
    out.frames = len(pts)
    if tb is not None and len(pts) > 1:
        deltas = {b - a for a, b in zip(pts, pts[1:])}
        out.constant_rate = len(deltas) == 1
        out.fps = float(1 / (tb * min(deltas))) if min(deltas) > 0 else 0.0
    elif len(pts) == 1:
        out.constant_rate = True
    if stderr := proc.stderr.decode(errors="replace").strip():
        out.error = stderr.splitlines()[0]
    return out


def check(path: Path, frames: int, width: int, height: int, fps: float) -> tuple[Decoded, str]:
    """Decode ``path``; return the result and '' if it matches, else what is wrong."""
    d = decode_clip(path)
    if d.error and d.frames == 0:
        return d, f"clip does not decode: {d.error}"
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
