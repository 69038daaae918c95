"""The two FFmpeg builds wandata uses, kept apart on purpose.

* PyAV (FFmpeg's libraries, in-process) decodes sources and, in ``verify``,
  decodes every written clip again.
* The ``ffmpeg`` program encodes the clips (``transcode``): the system ``ffmpeg``
  when present, else the one imageio-ffmpeg ships, so a user needs no system
  package. So a clip is always read back by a decoder other than its writer.
"""
from __future__ import annotations

import functools
import os
import shutil


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

