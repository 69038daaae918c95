"""Find candidate video files under the paths a user gives.

A file is a candidate when its first bytes look like a video container, or its
extension says it is a video (so a broken ``.mp4`` is reported, not silently
skipped). Everything else (captions, notes, images) is left alone.
"""
from __future__ import annotations

import os
from pathlib import Path

from wandata import storage

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


def discover(paths: list[str | Path], exclude: list[str | Path] = ()) -> list[Path | str]:
    """Candidate files under ``paths`` (recursive, hidden entries skipped), sorted, unique.

    ``exclude`` holds directories never to descend into, e.g. the dataset being written.
    An object-store URL (``s3://bucket/raw/``) gives the URLs of the candidates under it
    (``discover_urls``), after the local paths.
    """
    urls = [p for p in paths if storage.is_url(p)]
    paths = [p for p in paths if not storage.is_url(p)]
    skip = {Path(p).resolve() for p in exclude if not storage.is_url(p)}
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
    return sorted(found) + discover_urls(urls, [str(p) for p in exclude if storage.is_url(p)])


def discover_urls(urls: list[str], exclude: list[str] = ()) -> list[str]:
    """Candidate objects under each URL prefix (the same rule as on disk: a video extension,
    or a video's first bytes, one ranged read each), the dataset's own prefix left out."""
    skip = [e.rstrip("/") + "/" for e in exclude]
    found: dict[str, None] = {}
    for url in urls:
        objects = storage.files(url)
        if not objects:
            raise FileNotFoundError(f"{url}: no such object or prefix (or it is empty)")
        for obj in objects:
            if obj.rstrip("/") == url.rstrip("/"):
                found[obj] = None  # named explicitly: always a candidate, so it gets a verdict
            elif not any(obj.startswith(s) for s in skip) and (
                    Path(storage.name(obj)).suffix.lower() in VIDEO_EXTENSIONS
                    or looks_like_video(storage.head(obj, 192))):
                found[obj] = None
    return sorted(found)
