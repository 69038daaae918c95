"""Reason codes: why a source or a clip was not kept, as one ``Reason`` enum.

Every manifest row that is dropped or failed carries a ``reason_code`` next to its
human ``reason``. Code reads the code, people read the reason: nothing parses the
message back. Each code is one of two kinds, and the kind decides what a rerun does:

* a **drop** is a decision (too short, a quality filter, a duplicate): the same file with the
  same settings is dropped again, so a rerun leaves it alone;
* a **failure** is an accident (a failed encode, a full disk, a damaged file, a bug): a rerun
  tries the source again (``Manifest.done``), since the cause may be gone.

A kept source can carry a failure code as a warning (``truncated``, ``decode_error``: clips
came from the readable part only). docs/ingest.md has this table for users.

``Reason`` is a ``str`` enum whose member names are the codes themselves: a member compares
equal to, hashes like and is stored as its code, so ``c.reason_code == "too_short"`` holds
whether the row was just made or read back from a manifest (which stores plain strings).
"""
from __future__ import annotations

import errno
import os
from enum import Enum

DROP, FAILURE = "drop", "failure"
SOURCE, CLIP, BOTH = "source", "clip", "source, clip"

# The quality filters' messages: the filter table (wandata.quality.filters) fills it from its row.
_FILTER = '{finding}; {hint} (to keep such clips change {setting} or remove "{name}" from filters)'


class Reason(str, Enum):
    """One code: its kind (``DROP`` or ``FAILURE``), what it ``applies`` to (source, clip or
    both), a short ``label`` (the report's headings), its ``meaning`` (the docs table), the
    ``fix`` it suggests, and the ``template`` of its message where the message is built from
    one (``message``). Messages that carry figures measured on the spot are written where they
    are measured."""

    def __new__(cls, code: str, kind: str, applies: str, label: str, meaning: str, fix: str,
                template: str = ""):
        self = str.__new__(cls, code)
        self._value_ = code
        self.kind, self.applies, self.label = kind, applies, label
        self.meaning, self.fix, self.template = meaning, fix, template
        return self

    __str__ = str.__str__  # str() and f-strings give the code, as for the plain strings stored

    # sources
    unreadable = ("unreadable", FAILURE, SOURCE, "unreadable",
                  "the file cannot be opened or read (permissions, I/O error)",
                  "check the file's permissions", "cannot read the file ({error}); check its permissions")
    empty_file = ("empty_file", FAILURE, SOURCE, "empty file", "the file is 0 bytes",
                  "copy it again from the original",
                  "the file is empty (0 bytes); copy it again from the original")
    not_a_video = ("not_a_video", FAILURE, SOURCE, "not a video",
                   "no container FFmpeg can open, or no video stream in it",
                   "check that the file is a whole video; copy it again from the original",
                   "not a readable video ({error}); the file is corrupt or not a video")
    audio_only = ("audio_only", FAILURE, SOURCE, "audio only", "the file holds audio and no video",
                  "leave audio files out of the sources",
                  "the file has only audio; nothing to cut clips from")
    truncated = ("truncated", FAILURE, SOURCE, "truncated",
                 "the video stops before the duration its header declares",
                 "copy the file again to use all of it",
                 "truncated: the video stops at {duration_s:.2f} s of the {declared_s:.2f} s its header "
                 "declares; copy the file again to use all of it")
    decode_error = ("decode_error", FAILURE, SOURCE, "decode error",
                    "the decoder failed: on a kept source the clips come from the part before the damage",
                    "copy the file again from the original")
    too_short = ("too_short", DROP, SOURCE, "too short", "shorter than min_source_duration_s",
                 "lower --min-source-duration to keep it",
                 "only {duration_s:.2f} s long (minimum {minimum} s); too short to cut a clip from")
    too_small = ("too_small", DROP, SOURCE, "too small",
                 "filling the bucket would upscale more than 1/min_source_scale",
                 "lower --min-source-scale to keep it")
    no_long_shot = ("no_long_shot", DROP, SOURCE, "no long shot",
                    "no shot is long enough for one clip of --frames",
                    "a smaller --frames keeps shorter shots",
                    "no shot is long enough for one clip; see the dropped clip rows for each shot's length")
    all_filtered = ("all_filtered", DROP, SOURCE, "all filtered",
                    "every window was dropped by the quality filters",
                    "see the clip rows' reasons: each names the setting to change",
                    "every clip was dropped by the quality filters; see the clip rows' reasons")
    duplicate_content = ("duplicate_content", DROP, SOURCE, "duplicate content",
                         "the same bytes as another source, which is kept",
                         "nothing: the other copy is used", "same content as {other}; kept that copy only")
    # clips
    shot_too_short = ("shot_too_short", DROP, CLIP, "shot too short",
                      "the shot is shorter than one clip (a row per such shot)",
                      "a smaller --frames keeps shorter shots")
    filter_static = ("filter_static", DROP, CLIP, "quality: static",
                     "quality filter static: motion below min_motion",
                     'lower min_motion or remove "static" from filters', _FILTER)
    filter_fast = ("filter_fast", DROP, CLIP, "quality: fast",
                   "quality filter fast: motion above max_motion",
                   'raise max_motion or remove "fast" from filters', _FILTER)
    filter_blur = ("filter_blur", DROP, CLIP, "quality: blur",
                   "quality filter blur: sharpness below min_sharpness",
                   'lower min_sharpness or remove "blur" from filters', _FILTER)
    filter_dark = ("filter_dark", DROP, CLIP, "quality: dark",
                   "quality filter dark: brightness below min_brightness",
                   'lower min_brightness or remove "dark" from filters', _FILTER)
    filter_bright = ("filter_bright", DROP, CLIP, "quality: bright",
                     "quality filter bright: brightness above max_brightness",
                     'raise max_brightness or remove "bright" from filters', _FILTER)
    filter_flat = ("filter_flat", DROP, CLIP, "quality: flat",
                   "quality filter flat: contrast below min_contrast",
                   'lower min_contrast or remove "flat" from filters', _FILTER)
    filter_text = ("filter_text", DROP, CLIP, "quality: text",
                   "quality filter text: burned-in text above max_text",
                   'raise max_text or remove "text" from filters', _FILTER)
    near_duplicate = ("near_duplicate", DROP, CLIP, "quality: duplicate",
                      "quality filter duplicate: looks like a clip that is kept",
                      'lower max_duplicate_distance or remove "duplicate" from filters',
                      "duplicate: perceptual-hash distance {distance} <= max_duplicate_distance {bound} to "
                      "{twin}, which is kept (to keep both lower max_duplicate_distance or remove "
                      '"duplicate" from filters)')
    # `wandata clip` (wandata/quality/clip.py): text prompts and CLIP near-duplicates
    clip_drop_if = ("clip_drop_if", DROP, CLIP, "CLIP: drop-if prompt",
                    "`wandata clip --drop-if`: the clip looks like a prompt to drop",
                    "raise --drop-threshold or leave that prompt out",
                    'CLIP similarity {similarity:.3f} >= --drop-threshold {bound} to the --drop-if prompt '
                    '"{prompt}" (to keep such clips raise --drop-threshold or leave the prompt out)')
    clip_keep_if = ("clip_keep_if", DROP, CLIP, "CLIP: no keep-if prompt",
                    "`wandata clip --keep-if`: the clip looks like none of the prompts to keep",
                    "lower --keep-threshold or add a --keep-if prompt",
                    'CLIP similarity {similarity:.3f} < --keep-threshold {bound} to every --keep-if prompt '
                    '(closest "{prompt}"; to keep such clips lower --keep-threshold or add a prompt)')
    semantic_duplicate = ("semantic_duplicate", DROP, CLIP, "CLIP: semantic duplicate",
                          "`wandata clip --dedup`: the same scene as a clip that is kept (CLIP embeddings)",
                          "raise --min-similarity, or pick another --keep-rule",
                          "one of {size} clips linked at CLIP similarity >= {bound}; {twin} (clip {twin_id}) "
                          "is kept as {why} (--keep-rule {rule}); similarity to it {similarity:.3f} (to keep "
                          "both raise --min-similarity)")
    rejected_in_review = ("rejected_in_review", DROP, CLIP, "rejected in review",
                          "a person rejected the clip in `wandata review` (the note, if any, follows)",
                          "open `wandata review` and keep it, or undo the decision",
                          "rejected in review{note}")
    verify_failed = ("verify_failed", FAILURE, CLIP, "verify failed",
                     "the written clip did not decode to exactly N frames of WxH at a constant rate",
                     "run the same command again; if it fails again, report it with this file",
                     "verification failed: {problem}")
    # both
    encode_failed = ("encode_failed", FAILURE, BOTH, "encode failed", "ffmpeg could not write the clip",
                     "check that the dataset folder is writable and ffmpeg works, then run the same "
                     "command again to retry")
    disk_full = ("disk_full", FAILURE, BOTH, "disk full",
                 "no space left on the dataset's disk (ENOSPC, EDQUOT)",
                 "free space on the dataset's disk, then run the same command again")
    storage_error = ("storage_error", FAILURE, BOTH, "storage error",
                     "the object store (s3://, gs://, az://) kept failing after retries: 5xx, "
                     "throttling, dropped connections (docs/storage.md)",
                     "check the storage service, credentials and network, then run the same command again")
    unexpected_error = ("unexpected_error", FAILURE, BOTH, "unexpected error",
                        "a bug or an unforeseen error; the reason names it", "please report it with this file")
    path_outside_root = ("path_outside_root", FAILURE, BOTH, "path outside root",
                         "a path read from a file leads outside the folder it belongs to (see docs/export.md)",
                         "correct the path in the file, or move what it names inside that folder")

    @classmethod
    def of(cls, code: str) -> Reason | None:
        """The member for a stored code; None for "" (kept, or a manifest from before codes)
        and for a code this version does not know."""
        try:
            return cls(code)
        except ValueError:
            return None

    @property
    def is_failure(self) -> bool:
        return self.kind == FAILURE

    def message(self, **figures) -> str:
        """The message for people, from the template and the figures it names."""
        if not self.template:
            raise ValueError(f"{self.value} has no message template; its message is written where it is measured")
        return self.template.format(**figures)


CODES: dict[str, Reason] = {r.value: r for r in Reason}

FILTER_CODES: dict[str, Reason] = {
    "static": Reason.filter_static, "fast": Reason.filter_fast, "blur": Reason.filter_blur,
    "dark": Reason.filter_dark, "bright": Reason.filter_bright, "flat": Reason.filter_flat,
    "text": Reason.filter_text, "duplicate": Reason.near_duplicate}
_FILTER_OF = {v: k for k, v in FILTER_CODES.items()}

_DISK_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
# What ffmpeg prints for ENOSPC (av_err2str -> strerror), to classify its failed encodes.
_DISK_FULL_TEXT = tuple(os.strerror(e) for e in _DISK_FULL_ERRNOS)


def is_failure(code: str) -> bool:
    """True for an accident worth retrying. Unknown codes count as failures: retrying is safe."""
    r = Reason.of(code)
    return r is None or r.is_failure


def filter_of(code: str) -> str:
    """The quality filter's name (``static``, ``duplicate``...) for a filter code, else ''."""
    return _FILTER_OF.get(code, "")


def label(code: str) -> str:
    """A short label for people: the code's, or the code itself if this version does not know it."""
    r = Reason.of(code)
    return r.label if r else code.replace("_", " ")


def for_exception(e: BaseException) -> Reason:
    """``disk_full`` for an out-of-space error (also when it is the cause of another),
    ``storage_error`` for an object store that kept failing, else ``unexpected_error``."""
    seen = 0
    while e is not None and seen < 8:
        if isinstance(e, OSError) and e.errno in _DISK_FULL_ERRNOS:
            return Reason.disk_full
        if getattr(e, "code", None) == "storage_error":  # wandata.storage.StorageError
            return Reason.storage_error
        e, seen = e.__cause__ or e.__context__, seen + 1
    return Reason.unexpected_error


def for_encoder_message(text: str) -> Reason:
    """``disk_full`` if ffmpeg's error output says the disk is full, else ``encode_failed``."""
    return Reason.disk_full if any(t in text for t in _DISK_FULL_TEXT) else Reason.encode_failed


def for_write_error(e: OSError) -> Reason:
    """A clip that could not even be started (its folder cannot be made, ...)."""
    return Reason.disk_full if e.errno in _DISK_FULL_ERRNOS else Reason.encode_failed
