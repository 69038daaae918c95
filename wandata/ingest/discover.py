"""Find candidate video files under the paths a user gives.

A file is a candidate when its first bytes look like a video container, or its
extension says it is a video (so a broken ``.mp4`` is reported, not silently
skipped). Everything else (captions, notes, images) is left alone.
"""
from __future__ import annotations

import os
from pathlib import Path

VIDEO_EXTENSIONS = {
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts",
    ".wmv", ".flv", ".3gp", ".ogv", ".mxf", ".vob", ".y4m",
}


def looks_like_video(head: bytes) -> bool:
    if len(head) < 12:
        return False
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip"):
        return True  # ISO-BMFF / QuickTime
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return True  # Matroska / WebM
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return True
    if head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"):
        return True  # MPEG-PS / MPEG-1/2 elementary
    if head[0] == 0x47 and len(head) >= 189 and head[188] == 0x47:
        return True  # MPEG-TS, 188-byte packets
    if head[:4] == b"FLV\x01" or head[:4] == b"OggS" or head[:9] == b"YUV4MPEG2":
        return True
    if head[:16] == bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c"):
        return True  # ASF / WMV
    return False


def is_candidate(path: Path) -> bool:
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        return True
    try:
        with open(path, "rb") as f:
            return looks_like_video(f.read(192))
    except OSError:
        return False


def discover(paths: list[str | Path], exclude: list[str | Path] = ()) -> list[Path]:
    """Candidate files under ``paths`` (recursive, hidden entries skipped), sorted, unique.

    ``exclude`` holds directories never to descend into, e.g. the dataset being written.
    """
    skip = {Path(p).resolve() for p in exclude}
    found: dict[Path, None] = {}
    for p in map(Path, paths):
        if p.is_file():
            found[p] = None  # named explicitly: always a candidate, so it gets a verdict
            continue
        if not p.is_dir():
            raise FileNotFoundError(f"{p}: no such file or directory")
        for root, dirs, files in os.walk(p):
            dirs[:] = sorted(d for d in dirs
                             if not d.startswith(".") and (Path(root) / d).resolve() not in skip)
            for name in sorted(files):
                if name.startswith("."):
                    continue
                fp = Path(root) / name
                if fp.is_file() and is_candidate(fp):
                    found[fp] = None
    return sorted(found)
