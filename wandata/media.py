"""The two FFmpeg builds wandata uses, kept apart on purpose.

* PyAV (FFmpeg's libraries, in-process) decodes sources and encodes clips.
* The ``ffmpeg`` program decodes every written clip again in ``verify``: a second,
  independent decoder, so a clip PyAV can read but other tools cannot is caught.
  The system ``ffmpeg`` is used when present, else the one imageio-ffmpeg ships,
  so a user needs no system package.
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path


class MediaToolError(RuntimeError):
    pass


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    explicit = os.environ.get("WANDATA_FFMPEG")
    if explicit:
        return explicit
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as e:  # noqa: BLE001 - any failure means "no ffmpeg"
        raise MediaToolError(
            "no ffmpeg program found: install it (apt-get install ffmpeg) or "
            "`pip install imageio-ffmpeg`, or point WANDATA_FFMPEG at one") from e


def run_ffmpeg(args: list[str], *, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run ffmpeg with an argv list (never a shell string); stdout and stderr are captured."""
    argv = [ffmpeg_exe(), "-hide_banner", "-nostdin", *map(str, args)]
    return subprocess.run(argv, capture_output=True, timeout=timeout, check=False)


def atomic_replace(tmp: Path, final: Path) -> None:
    """Make ``final`` appear complete or not at all (rename is atomic on one filesystem)."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)
