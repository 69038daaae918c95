"""One pass over a source: decode, detect shots, plan windows and encode clips together.

Frames flow as output-grid pictures into the shot detector (and every decoded
frame, as a tiny copy, into its source-rate cut rule); as soon as
the detector's verdicts make a window certain (``detect.tracker.ShotTracker`` +
``windows.window_starts``), its pictures go to an encoder and are dropped. So every
source frame is decoded once, only grid frames are scaled, and memory holds a
few seconds of pictures, not the file.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from wandata import quality
from wandata.dataset import reasons
from wandata.media.bucket import Fit
from wandata.settings import Settings
from wandata.ingest.clips import ShortShot, WindowOutcome
from wandata.ingest.windows import Window, shortfall_reason, window_starts
from wandata.media.decode import Timeline, grid_frames
from wandata.detect.base import TwoRate
from wandata.detect.registry import make_detector
from wandata.detect.tracker import ShotTracker
from wandata.media.encode import ClipWriter, Encoder
from wandata.media.picture import colour_args, tiny_rgb, to_bucket
from wandata.media.verify import check

DETECT_BATCH = 32          # grid frames handed to the detector at once
UNIFORM_MAX_SHOT_S = 120   # uniform mode buffers a whole shot: longer shots count as several


@dataclass
class Result:
    timeline: Timeline
    shots: list[tuple[int, int]] = field(default_factory=list)   # grid frames, inclusive
    outcomes: list[WindowOutcome] = field(default_factory=list)  # one per planned window, in order
    dropped: list[ShortShot] = field(default_factory=list)


class ClipMaker:
    def __init__(self, path: str, settings: Settings, fit: Fit, rotation: int,
                 clip_path: Callable[[Window], Path], on_frame: Callable[[], None] | None = None,
                 encode: bool = True, source_fps: float = 0.0):
        """``encode=False``: a dry run; windows are planned and scored, nothing is written.
        ``source_fps``: the source's frame rate (the probe's), which the cut rule's flash test
        counts in."""
        self.path, self.s, self.fit, self.rotation = path, settings, fit, rotation
        self.source_fps = source_fps or settings.fps
        self.clip_path, self.on_frame, self.encode = clip_path, on_frame, encode
        self.detector = make_detector(settings.detector, settings.threshold, settings.device, settings.fps)
        if hasattr(self.detector, "preload"):
            # Importing torch and loading the weights takes seconds; do it while decoding starts.
            threading.Thread(target=self.detector.preload, daemon=True).start()
        self.tracker = ShotTracker(trim=math.ceil(settings.boundary_trim_s * settings.fps - 1e-9))
        self.pictures: dict[int, object] = {}
        self.emitted: dict[int, int] = {}  # open/closed shot start -> windows written
        self.colour: list[str] | None = None
        self.encoder = Encoder(parallel=2, after=lambda p: check(p, settings.frames, fit.width,
                                                                 fit.height, settings.fps))
        self.result = Result(Timeline())

    def run(self) -> Result:
        tl = self.result.timeline
        det = TwoRate(self.detector, tl.grid_src, self.source_fps)
        source_size = getattr(self.detector, "source_size", self.detector.size)
        small: list[np.ndarray] = []
        tiny: list[np.ndarray] = []

        def each(frame) -> None:
            if det.source is not None:
                tiny.append(tiny_rgb(frame, self.fit, self.rotation, source_size))

        def push() -> None:
            if tiny:
                det.push_source(np.stack(tiny))
                tiny.clear()
            if small:
                self._feed(det.push(np.stack(small)))
                small.clear()

        try:
            for j, pic in grid_frames(self.path, self.s.fps, self._convert, tl, each):
                self.pictures[j] = pic
                small.append(pic.small_rgb(*self.detector.size))
                if len(small) >= DETECT_BATCH:
                    push()
                if self.on_frame:
                    self.on_frame()
            push()
            self._feed(det.flush())
            for shot in self.tracker.finish():
                self._close(shot)
            self._collect()
        except BaseException:
            self.encoder.abort()  # no half-written clip survives an error or Ctrl-C
            raise
        return self.result

    def _collect(self) -> None:
        """Each window's encode and verification, once every encode has finished."""
        errors = self.encoder.join()
        for o in self.result.outcomes:
            if o.window in errors:
                o.error = errors[o.window]
            elif o.window in self.encoder.results:
                o.decoded, o.problem = self.encoder.results[o.window]

    def _convert(self, frame):
        if self.colour is None:
            self.colour = colour_args(frame)
        return to_bucket(frame, self.fit, self.rotation)

    def _feed(self, mask: np.ndarray) -> None:
        closed, open_ = self.tracker.update(mask)
        for shot in closed:
            self._close(shot)
        if open_ is not None:
            if self.s.mode in ("head", "chunk"):
                # Windows at the start of an unfinished shot are already certain.
                self._write(open_, len(self.result.shots))
            elif self.tracker.n - open_[0] > UNIFORM_MAX_SHOT_S * self.s.fps:
                for shot in self.tracker.split():
                    self._close(shot)
        self._evict()

    def _close(self, shot: tuple[int, int]) -> None:
        index = len(self.result.shots)
        self.result.shots.append(shot)
        if not self._write(shot, index):
            self.result.dropped.append(ShortShot(index, shot, shortfall_reason(
                shot[1] - shot[0] + 1, self.s.frames, self.s.fps)))

    def _write(self, shot: tuple[int, int], index: int) -> int:
        """Write the shot's windows not written yet; returns how many the shot holds."""
        starts = window_starts(*shot, self.s.frames, self.s.mode, self.s.windows_per_shot)
        done = self.emitted.get(shot[0], 0)
        for wi, start in enumerate(starts[done:], start=done):
            w = Window(index, wi, start, self.s.frames)
            pictures = [self.pictures[j] for j in w.frames]
            scores = quality.score(pictures, self.s.fps)
            outcome = WindowOutcome(w, scores, *quality.verdict(scores, self.s))
            self.result.outcomes.append(outcome)
            if outcome.drop or not self.encode:
                continue  # filtered out (not worth an encode), or a dry run
            try:
                writer = ClipWriter(self.clip_path(w), self.fit, self.s.fps, self.s.crf, self.s.preset,
                                    self.colour or [])
            except OSError as e:  # its folder cannot be made, ffmpeg cannot be started...
                outcome.error = (reasons.for_write_error(e), (
                    f"encoding failed: could not start writing {self.clip_path(w)} "
                    f"({e.strerror or e}); fix that, then run the same command again to retry"))
                continue
            self.encoder.submit(w, writer, pictures)
        self.emitted[shot[0]] = max(done, len(starts))
        return len(starts)

    def _evict(self) -> None:
        """Drop pictures no future window can use."""
        t = self.tracker
        low = t.n if t.run_start is None else t.open_start()
        if t.run_start is not None and self.s.mode != "uniform":
            written = self.emitted.get(low, 0)
            low = t.n if (self.s.mode == "head" and written) else low + written * self.s.frames
        for j in [j for j in self.pictures if j < low]:
            del self.pictures[j]
