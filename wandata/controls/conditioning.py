"""Conditioning inputs made from the clips themselves, in the dataset, for ``export --with``.

``--with`` names trainer columns (DiffSynth's names, docs/export.md "Conditioning inputs"):

* ``input_image``, ``reference_image``, ``vace_reference_image``: the clip's first frame,
  ``end_image``: its last frame — lossless PNGs of the frames exactly as PyAV decodes the clip;
* ``control_video:NAME``, ``vace_video:NAME``: the clip passed frame by frame through the
  control extractor ``NAME`` (``registry.py``), encoded losslessly (libx264rgb, qp 0: RGB in,
  the same RGB out) with the clip's frame count, size and frame rate.

Files go to ``DATASET/conditioning/`` (a folder that carries ``wandata_conditioning.json``;
any other folder of that name is never written into), named by the clip and a key over the
clip's content (its decoded-picture digest from ingest) and everything that decides the
output, so a file is made once and every later export reuses it untouched; a changed clip or
other options give a new name. Every file is written under a temporary name and renamed into
place. Paths are planned before anything is written, so an export can be refused without a
trace.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from wandata import atomic
from wandata.confine import OutsideRoot, inside
from wandata.controls.base import ControlError, Extractor
from wandata.controls.registry import available, describe, make

FOLDER = "conditioning"
MARKER = "wandata_conditioning.json"
SCHEMA = "wandata.conditioning/1"
# Raise when the way images or control videos are written changes (codec, options, PNG).
WRITER_VERSION = 1

# column -> which frame of the clip it is
IMAGE_COLUMNS = {"input_image": "first", "end_image": "last", "reference_image": "first",
                 "vace_reference_image": "first"}
VIDEO_COLUMNS = ("control_video", "vace_video")
COLUMNS = (*IMAGE_COLUMNS, *VIDEO_COLUMNS)
# What DiffSynth's Wan train.py loads from the column itself (--data_file_keys); it takes
# input_image and end_image from the loaded clip (data["video"][0] / [-1]) instead.
DIFFSYNTH_FILE_KEYS = ("control_video", "vace_video", "reference_image", "vace_reference_image")
# libx264rgb at qp 0 is lossless for RGB: the decoder returns the very bytes encoded.
VIDEO_CODEC, VIDEO_OPTIONS = "libx264rgb", {"qp": "0", "preset": "veryfast"}


@dataclass(frozen=True)
class Spec:
    column: str
    extractor: str = ""   # video columns only

    @property
    def text(self) -> str:
        return f"{self.column}:{self.extractor}" if self.extractor else self.column


def valid_inputs() -> list[str]:
    return [*IMAGE_COLUMNS, *(f"{c}:{name}" for c in VIDEO_COLUMNS for name in available())]


def parse(values, control_opts=()) -> tuple[list[Spec], dict[str, Extractor]]:
    """``--with`` values (each a comma list) and ``--control-opt NAME.KEY=VALUE`` options ->
    the inputs and the extractors they name (``ControlError`` naming the bad value)."""
    specs: list[Spec] = []
    for value in values:
        for part in (p.strip() for p in str(value).split(",")):
            if not part:
                continue
            column, _, name = part.partition(":")
            if column in IMAGE_COLUMNS and not name:
                spec = Spec(column)
            elif column in VIDEO_COLUMNS and name:
                if name not in available():
                    raise ControlError(f"--with {part}: unknown control extractor {name!r}; choose from "
                                       f"{', '.join(available())} (plugins register under the entry point "
                                       "group 'wandata.controls')")
                spec = Spec(column, name)
            elif column in VIDEO_COLUMNS:
                raise ControlError(f"--with {part}: name the control extractor, e.g. {column}:canny; "
                                   f"valid inputs: {', '.join(valid_inputs())}")
            else:
                raise ControlError(f"--with {part}: unknown input; valid inputs: {', '.join(valid_inputs())}")
            if any(s.column == spec.column for s in specs):
                raise ControlError(f"--with names {spec.column} twice; a metadata row has one {spec.column} column")
            specs.append(spec)
    options: dict[str, dict] = {}
    used = {s.extractor for s in specs if s.extractor}
    for opt in control_opts:
        key, eq, value = str(opt).partition("=")
        name, dot, key = key.partition(".")
        if not (eq and dot and name and key):
            raise ControlError(f"--control-opt {opt!r}: write it as EXTRACTOR.KEY=VALUE, e.g. canny.low=50")
        if name not in used:
            raise ControlError(f"--control-opt {opt!r}: no --with input uses the control extractor {name!r} "
                               f"(in use: {', '.join(sorted(used)) or 'none'})")
        if key not in describe(name):
            raise ControlError(f"--control-opt {opt!r}: {name} has no option {key!r}; its options: "
                               f"{', '.join(f'{name}.{k}' for k in describe(name)) or 'none'}")
        options.setdefault(name, {})[key] = value
    extractors = {name: make(name, options.get(name)) for name in sorted(used)}
    return specs, extractors


# --- where each file goes --------------------------------------------------------------

def _marker_is_ours(folder: Path) -> bool:
    marker = folder / MARKER
    try:
        data = json.loads(marker.read_text(encoding="utf-8")) if not marker.is_symlink() else None
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("schema") == SCHEMA


def _safe(clip_id: str) -> str:
    # A clip id is data from the manifest: only a tame subset of it goes into a file name.
    return re.sub(r"[^A-Za-z0-9._-]", "_", clip_id).lstrip(".")[:80] or "clip"


def _content(file: Path, decoded_digest: str) -> bytes:
    """The clip's content identity: the digest of its decoded pictures that ingest's verify
    recorded (reading every clip's bytes again on each export would cost a full pass over the
    dataset), with the file's size as a guard against a file swapped behind the manifest; the
    file's own bytes when the manifest has no digest."""
    if decoded_digest:
        return f"decoded:{decoded_digest}:{file.stat().st_size}".encode()
    return b"bytes:" + hashlib.blake2b(file.read_bytes(), digest_size=16).digest()


def _digest(*parts: bytes) -> str:
    h = hashlib.blake2b(digest_size=8)
    for p in parts:
        h.update(len(p).to_bytes(8, "little") + p)
    return h.hexdigest()


@dataclass
class Job:
    """One clip's conditioning files: column -> path relative to the dataset."""
    clip_id: str
    file: Path
    num_frames: int
    columns: dict[str, str] = field(default_factory=dict)


class Plan:
    """The conditioning files of an export: planned (``plan``), then made (``make``)."""

    def __init__(self, dataset_dir: Path, specs: list[Spec], extractors: dict[str, Extractor]):
        self.dataset = Path(dataset_dir)
        self.folder = self.dataset / FOLDER
        self.specs, self.extractors = specs, extractors
        self.jobs: list[Job] = []
        self.made = self.reused = 0

    def _rel(self, sub: str, clip_id: str, key: str, ext: str) -> str:
        return f"{FOLDER}/{sub}/{_safe(clip_id)}-{key}.{ext}"

    def plan(self, clips) -> dict[str, dict[str, str]]:
        """clip id -> {column: path relative to the dataset}; ``clips`` are (clip_id, file,
        num_frames, decoded_digest). Refuses (``ControlError``) a folder that is not ours, before
        writing."""
        try:
            atomic.check_dir(self.folder, _marker_is_ours, dataset=self.dataset, what="conditioning folder",
                             how=f"it carries {MARKER} with schema {SCHEMA!r}")
        except atomic.OutputRefused as e:
            raise ControlError(str(e)) from None
        keys = {name: json.dumps(ext.key(), sort_keys=True).encode() for name, ext in self.extractors.items()}
        out = {}
        for clip_id, file, num_frames, decoded in clips:
            content = _content(Path(file), decoded)
            job = Job(clip_id, Path(file), num_frames)
            for s in self.specs:
                if s.extractor:
                    key = _digest(content, keys[s.extractor], str(WRITER_VERSION).encode())
                    job.columns[s.column] = self._rel(f"control/{_safe(s.extractor)}", clip_id, key, "mp4")
                else:
                    which = IMAGE_COLUMNS[s.column]
                    key = _digest(content, which.encode(), str(WRITER_VERSION).encode())
                    job.columns[s.column] = self._rel(f"{which}_frame", clip_id, key, "png")
            for rel in job.columns.values():
                try:
                    inside(self.dataset, rel, f"conditioning file of {clip_id}")
                except OutsideRoot as e:
                    raise ControlError(f"{e} (a link inside {self.folder} leads out of the dataset); "
                                       "remove the link") from None
            self.jobs.append(job)
            out[clip_id] = dict(job.columns)
        return out

    # --- making ----------------------------------------------------------------------------
    def make(self) -> dict:
        """Write every planned file that is not there yet; returns counts."""
        if not self.jobs:
            return self.summary()
        if not _marker_is_ours(self.folder):
            atomic.write_text(self.folder / MARKER, json.dumps(
                {"schema": SCHEMA, "about": "conditioning inputs written by `wandata export --with`; "
                 "safe to delete (they are made again)"}, indent=2) + "\n")
        for job in self.jobs:
            todo = {}
            for column, rel in job.columns.items():
                path = self.dataset / rel
                if path.is_symlink() or (path.exists() and not path.is_file()):
                    raise ControlError(f"refusing to use {path}: it is not a file wandata wrote; remove it")
                if path.exists():
                    self.reused += 1     # content-addressed: the name says it is this clip's
                elif path not in todo.values():
                    todo[column] = path
            if todo:
                self._make_job(job, todo)
        return self.summary()

    def summary(self) -> dict:
        return {"folder": str(self.folder), "inputs": [s.text for s in self.specs],
                "made": self.made, "reused": self.reused}

    def _make_job(self, job: Job, todo: dict[str, Path]) -> None:
        frames, rate = decode_rgb(job.file)
        if len(frames) != job.num_frames:
            raise ControlError(f"clip {job.clip_id} ({job.file}) decodes to {len(frames)} frames, the manifest "
                               f"says {job.num_frames}; run `wandata check` and re-ingest its source")
        spec_of = {s.column: s for s in self.specs}
        done: dict[Path, bool] = {}
        for column, path in todo.items():
            if path in done:
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            spec = spec_of[column]
            if spec.extractor:
                control = self.extractors[spec.extractor](frames)
                write_video(path, control, rate)
            else:
                frame = frames[0] if IMAGE_COLUMNS[column] == "first" else frames[-1]
                atomic.write_bytes(path, png_bytes(frame))
            done[path] = True
            self.made += 1


# --- pictures in and out -----------------------------------------------------------------

def decode_rgb(path: Path) -> tuple[list[np.ndarray], Fraction]:
    """Every frame of a clip as RGB uint8 (PyAV's rgb24 conversion) and its frame rate."""
    try:
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            rate = s.average_rate or s.guessed_rate
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
    except (av.error.FFmpegError, IndexError) as e:
        raise ControlError(f"cannot decode {path}: {e}; run `wandata check` on the dataset") from None
    if not frames or not rate:
        raise ControlError(f"{path} has no frames or no frame rate; run `wandata check` on the dataset")
    return frames, Fraction(rate)


def png_bytes(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ControlError("OpenCV could not encode a PNG")
    return buf.tobytes()


def write_video(path: Path, frames: list[np.ndarray], rate: Fraction) -> None:
    """Encode ``frames`` losslessly at ``rate`` under a temporary name, decode it back and
    compare, then rename it into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    h, w = frames[0].shape[:2]
    try:
        with av.open(str(tmp), "w", format="mp4") as c:
            s = c.add_stream(VIDEO_CODEC, rate=rate)
            s.width, s.height, s.pix_fmt = w, h, "rgb24"
            s.time_base = 1 / rate
            s.options = dict(VIDEO_OPTIONS)
            for i, img in enumerate(frames):
                f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
                f.pts = i
                c.mux(s.encode(f))
            c.mux(s.encode(None))
        back, back_rate = decode_rgb(tmp)
        if (len(back) != len(frames) or back_rate != rate
                or any(not np.array_equal(a, b) for a, b in zip(frames, back))):
            raise ControlError(f"the control video for {path.name} does not decode back to what was encoded "
                               f"({len(back)} of {len(frames)} frames at {back_rate} fps); nothing was written")
        atomic.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
