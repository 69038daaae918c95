"""Small media helpers for the tests: decoding clips and a frame-numbered source."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

BITS = 12
CELL = 32  # each bit is a CELL x CELL square: survives scaling to a small bucket and x264


def decode(path: Path) -> tuple[list[np.ndarray], float]:
    """All frames (RGB) of a clip and its average frame rate, read with PyAV."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        rate = float(s.average_rate)
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
    return frames, rate


def barcode_frame(i: int, width: int, height: int) -> np.ndarray:
    """A frame whose top-left row of squares spells ``i`` in binary (white = 1)."""
    img = np.full((height, width, 3), 64, np.uint8)
    for b in range(BITS):
        if (i >> b) & 1:
            img[0:CELL, b * CELL:(b + 1) * CELL] = 255
        else:
            img[0:CELL, b * CELL:(b + 1) * CELL] = 0
    return img


def read_barcode(img: np.ndarray, scale: float, offset_x: float = 0.0, offset_y: float = 0.0) -> int:
    """Read the number back from a frame scaled by ``scale`` and shifted by the crop offset."""
    value = 0
    for b in range(BITS):
        cx = (b * CELL + CELL / 2) * scale - offset_x
        cy = (CELL / 2) * scale - offset_y
        if img[int(cy), int(cx)].mean() > 128:
            value |= 1 << b
    return value


def write_barcode_video(path: Path, n: int, width: int, height: int, fps=None, *,
                        pts_s: list[float] | None = None) -> list[float]:
    """A constant-rate (``fps``) or variable-rate (``pts_s``) H.264 file, frame i showing i.
    Returns every frame's presentation time in seconds."""
    tb = Fraction(1, 90000)
    if pts_s is None:
        rate = Fraction(fps).limit_denominator(1001)
        pts_s = [float(i / rate) for i in range(n)]
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.time_base = tb
        s.codec_context.time_base = tb
        s.options = {"crf": "18", "preset": "ultrafast"}
        for i in range(n):
            f = av.VideoFrame.from_ndarray(barcode_frame(i, width, height), format="rgb24")
            f.pts = int(round(pts_s[i] / tb))
            f.time_base = tb
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    return pts_s


def dataset_state(out: Path):
    """A dataset's manifest rows (timings left out) and clip files, in a stable order: what two
    runs that should agree are compared on (each clip row carries its decoded-picture digest)."""
    from wandata.dataset.manifest import read_table

    rows = read_table(out).to_pylist()
    for r in rows:
        r.pop("timings_json")
    files = sorted(p.relative_to(out).as_posix() for p in (out / "clips").rglob("*") if p.is_file())
    return sorted(rows, key=lambda r: (r["kind"], r["path"])), files


def small_sources(folder: Path, shot_frames: list[int]) -> Path:
    """Three short 640x368 25 fps sources (a different photo each, then the astronaut), for
    runs that compare engines or interrupted and uninterrupted ingests."""
    from tools import synth

    for k, photo in enumerate(["rocket", "coffee", "chelsea"]):
        shots = synth.make_shots(shot_frames, photos=[photo, "astronaut"], seed=k)
        synth.write_video(folder / f"src{k}.mp4", shots, None, 640, 368, 25, crf=20)
    return folder
