"""Reason codes: why a source or a clip was not kept, as a short identifier.

Every manifest row that is dropped or failed carries a ``reason_code`` next to its
human ``reason``. Code reads the code, people read the reason: nothing parses the
message back. Each code is one of two kinds, and the kind decides what a rerun does:

* a **drop** is a decision (too short, a quality filter, a duplicate): the same file with the
  same settings is dropped again, so a rerun leaves it alone;
* a **failure** is an accident (a failed encode, a full disk, a damaged file, a bug): a rerun
  tries the source again (``Manifest.done``), since the cause may be gone.

A kept source can carry a failure code as a warning (``truncated``, ``decode_error``: clips
came from the readable part only). docs/ingest.md has this table for users.
"""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass

DROP, FAILURE = "drop", "failure"


@dataclass(frozen=True)
class Code:
    name: str
    kind: str       # DROP or FAILURE
    applies: str    # "source", "clip" or "source, clip"
    meaning: str


_TABLE = [
    # sources
    Code("unreadable", FAILURE, "source", "the file cannot be opened or read (permissions, I/O error)"),
    Code("empty_file", FAILURE, "source", "the file is 0 bytes"),
    Code("not_a_video", FAILURE, "source", "no container FFmpeg can open, or no video stream in it"),
    Code("audio_only", FAILURE, "source", "the file holds audio and no video"),
    Code("truncated", FAILURE, "source", "the video stops before the duration its header declares"),
    Code("decode_error", FAILURE, "source",
         "the decoder failed: on a kept source the clips come from the part before the damage"),
    Code("too_short", DROP, "source", "shorter than min_source_duration_s"),
    Code("too_small", DROP, "source", "filling the bucket would upscale more than 1/min_source_scale"),
    Code("no_long_shot", DROP, "source", "no shot is long enough for one clip of --frames"),
    Code("all_filtered", DROP, "source", "every window was dropped by the quality filters"),
    Code("duplicate_content", DROP, "source", "the same bytes as another source, which is kept"),
    # clips
    Code("shot_too_short", DROP, "clip", "the shot is shorter than one clip (a row per such shot)"),
    Code("filter_static", DROP, "clip", "quality filter static: motion below min_motion"),
    Code("filter_fast", DROP, "clip", "quality filter fast: motion above max_motion"),
    Code("filter_blur", DROP, "clip", "quality filter blur: sharpness below min_sharpness"),
    Code("filter_dark", DROP, "clip", "quality filter dark: brightness below min_brightness"),
    Code("filter_bright", DROP, "clip", "quality filter bright: brightness above max_brightness"),
    Code("filter_flat", DROP, "clip", "quality filter flat: contrast below min_contrast"),
    Code("filter_text", DROP, "clip", "quality filter text: burned-in text above max_text"),
    Code("near_duplicate", DROP, "clip", "quality filter duplicate: looks like a clip that is kept"),
    Code("verify_failed", FAILURE, "clip",
         "the written clip did not decode to exactly N frames of WxH at a constant rate"),
    # both
    Code("encode_failed", FAILURE, "source, clip", "ffmpeg could not write the clip"),
    Code("disk_full", FAILURE, "source, clip", "no space left on the dataset's disk (ENOSPC, EDQUOT)"),
    Code("unexpected_error", FAILURE, "source, clip", "a bug or an unforeseen error; the reason names it"),
    Code("path_outside_root", FAILURE, "source, clip",
         "a path read from a file leads outside the folder it belongs to (see docs/export.md)"),
]
CODES: dict[str, Code] = {c.name: c for c in _TABLE}

FILTER_CODES = {"static": "filter_static", "fast": "filter_fast", "blur": "filter_blur",
                "dark": "filter_dark", "bright": "filter_bright", "flat": "filter_flat",
                "text": "filter_text", "duplicate": "near_duplicate"}
_FILTER_OF = {v: k for k, v in FILTER_CODES.items()}

_DISK_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
# What ffmpeg prints for ENOSPC (av_err2str -> strerror), to classify its failed encodes.
_DISK_FULL_TEXT = tuple(os.strerror(e) for e in _DISK_FULL_ERRNOS)


def is_failure(code: str) -> bool:
    """True for an accident worth retrying. Unknown codes count as failures: retrying is safe."""
    c = CODES.get(code)
    return c is None or c.kind == FAILURE


def filter_of(code: str) -> str:
    """The quality filter's name (``static``, ``duplicate``...) for a filter code, else ''."""
    return _FILTER_OF.get(code, "")


def for_exception(e: BaseException) -> str:
    """``disk_full`` for an out-of-space error (also when it is the cause of another), else
    ``unexpected_error``."""
    seen = 0
    while e is not None and seen < 8:
        if isinstance(e, OSError) and e.errno in _DISK_FULL_ERRNOS:
            return "disk_full"
        e, seen = e.__cause__ or e.__context__, seen + 1
    return "unexpected_error"


def for_encoder_message(text: str) -> str:
    """``disk_full`` if ffmpeg's error output says the disk is full, else ``encode_failed``."""
    return "disk_full" if any(t in text for t in _DISK_FULL_TEXT) else "encode_failed"


def for_write_error(e: OSError) -> str:
    """A clip that could not even be started (its folder cannot be made, ...)."""
    return "disk_full" if e.errno in _DISK_FULL_ERRNOS else "encode_failed"
