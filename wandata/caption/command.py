"""``command``: a user's own program captions each clip.

The program is an argv list (never run through a shell, so paths with spaces or
quotes are safe). It gets the clip path and K sampled frames as JPEG paths, by
default appended in that order; the tokens ``{clip}`` and ``{frames}`` in the
argv place them explicitly. Whatever it prints on stdout is the caption.
The environment also carries WANDATA_CLIP_ID, WANDATA_CLIP and WANDATA_SOURCE.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from wandata.caption.base import Captioner, CaptionerError, ClipInput, Option, Result
from wandata.caption.frames import write_jpegs


def parse_argv(value) -> list[str]:
    """A JSON list (``["python", "cap.py"]``) or a string split like a POSIX shell
    would split it (quoting only; nothing is expanded or executed)."""
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    value = str(value).strip()
    if value.startswith("["):
        argv = json.loads(value)
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
            raise ValueError("a JSON argv must be a list of strings")
        return argv
    return shlex.split(value)


class CommandCaptioner(Captioner):
    name = "command"
    batch_size = 4
    options = {
        "cmd": Option([], "the program and its arguments, as a JSON list or a quoted string", parse_argv),
        "frames": Option(4, "frames sampled across the clip and passed as JPEG paths (0: none)", int),
        "max_side": Option(0, "shrink frames so their longer side is at most this (0: keep)", int),
        "timeout": Option(300.0, "seconds one clip may take before it is recorded as failed", float),
        "workers": Option(1, "clips captioned at the same time", int),
    }

    def __init__(self, **opts):
        super().__init__(**opts)
        argv = self.opts["cmd"]
        if not argv:
            raise CaptionerError("the command captioner needs a program: --opt cmd='[\"python\", \"caption.py\"]'")
        exe = argv[0]
        if shutil.which(exe) is None and not Path(exe).is_file():
            raise CaptionerError(f"caption command {exe!r} was not found (not a file, not on PATH); "
                                 "give its full path in --opt cmd=...")
        self.argv = argv
        self.batch_size = max(self.batch_size, self.opts["workers"])

    def label(self) -> str:
        return f"command:{Path(self.argv[0]).name}" + (f" {Path(self.argv[1]).name}" if len(self.argv) > 1 else "")

    def caption_batch(self, items: list[ClipInput]) -> list[Result]:
        with ThreadPoolExecutor(max(1, self.opts["workers"])) as pool:
            return list(pool.map(self._one, items))

    def _one(self, item: ClipInput) -> Result:
        with tempfile.TemporaryDirectory(prefix="wandata-frames-") as tmp:
            frames: list[str] = []
            if self.opts["frames"] > 0:
                try:
                    imgs = item.frames(self.opts["frames"], self.opts["max_side"])
                except Exception as e:  # noqa: BLE001 - an unreadable clip is this clip's error
                    return Result(error=f"could not sample frames from {item.path} ({type(e).__name__}: {e})")
                frames = [str(p) for p in write_jpegs(imgs, Path(tmp), item.record.clip_id)]
            argv = self._argv(str(item.path), frames)
            env = {**os.environ, "WANDATA_CLIP_ID": item.clip_id, "WANDATA_CLIP": str(item.path),
                   "WANDATA_SOURCE": item.record.source_path}
            try:
                proc = subprocess.run(argv, capture_output=True, timeout=self.opts["timeout"], env=env,
                                      stdin=subprocess.DEVNULL, check=False)
            except subprocess.TimeoutExpired:
                return Result(error=f"{self.label()} took longer than {self.opts['timeout']:g} s on "
                                    f"{item.clip_id} and was stopped; raise --opt timeout=SECONDS")
            except OSError as e:
                return Result(error=f"could not start {argv[0]!r} for {item.clip_id} ({e})")
        out = proc.stdout.decode("utf-8", errors="replace")
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", errors="replace").strip()[-500:]
            return Result(error=f"{self.label()} exited with status {proc.returncode} on {item.clip_id}"
                                + (f": {err}" if err else " and printed nothing on stderr"))
        if not out.strip():
            return Result(error=f"{self.label()} printed no caption for {item.clip_id} (empty stdout, exit 0)")
        return Result(text=out)

    def _argv(self, clip: str, frames: list[str]) -> list[str]:
        if not any(a in ("{clip}", "{frames}") for a in self.argv):
            return [*self.argv, clip, *frames]
        out: list[str] = []
        for a in self.argv:
            out.extend(frames if a == "{frames}" else [clip] if a == "{clip}" else [a])
        return out
