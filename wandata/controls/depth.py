"""Monocular depth per frame with Depth Anything V2 through ``transformers``.

No package on PyPI that we found ships depth weights inside its wheel (the depth-anything-v2
0.1.0 and depth-estimation 0.1.3 wheels hold code only), so the model is loaded with
``transformers``' own ``from_pretrained``: a Hugging Face model id (downloaded once into the
Hugging Face cache, ``HF_HOME``) or a local folder holding a saved model. The default,
``depth-anything/Depth-Anything-V2-Small-hf`` (24.8M parameters, Apache-2.0), is the small
Depth Anything V2 converted for transformers. Output: relative inverse depth (near is
bright), scaled to 0-255 over the whole clip at once so the brightness of a surface does not
flicker from frame to frame, as three equal channels.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from wandata.controls.base import ControlError, Extractor, Option

DEFAULT_MODEL = "depth-anything/Depth-Anything-V2-Small-hf"


def _device(value: str) -> str:
    if value not in ("auto", "cpu", "cuda") and not (value.startswith("cuda:") and value[5:].isdigit()):
        raise ValueError("choose auto, cpu, cuda or cuda:N")
    return value


class DepthExtractor(Extractor):
    name = "depth"
    options = {
        "model": Option(DEFAULT_MODEL, "a Hugging Face depth-estimation model id, or a local folder with one"),
        "revision": Option("main", "the model's revision (branch, tag or commit) on the hub"),
        "device": Option("auto", "auto (cuda when there is one), cpu, cuda or cuda:N", _device),
        "batch": Option(8, "frames per forward pass", int),
    }

    def check(self) -> None:
        if self.opts["batch"] < 1:
            raise ControlError(f"--control-opt depth.batch={self.opts['batch']}: must be at least 1")
        self._model = None

    def key(self) -> dict:
        # Device and batch change speed, not the pictures (beyond float rounding): not in the key.
        key = {"extractor": self.name, "version": self.version}
        folder = Path(self.opts["model"])
        if not folder.is_dir():
            return {**key, "model": self.opts["model"], "revision": self.opts["revision"]}
        # A local folder can be moved, or replaced in place: its files are what names the model.
        h = hashlib.blake2b(digest_size=16)
        for f in sorted(p for p in folder.rglob("*") if p.is_file()):
            name = f.relative_to(folder).as_posix().encode()
            h.update(len(name).to_bytes(8, "little") + name + f.stat().st_size.to_bytes(8, "little") + f.read_bytes())
        return {**key, "model_files": h.hexdigest()}

    def _load(self):
        if self._model is not None:
            return self._model
        try:
            import torch
            from transformers import AutoImageProcessor, AutoModelForDepthEstimation
        except ImportError as e:
            raise ControlError(f"the depth extractor needs transformers ({e}); "
                               "pip install 'wandata[depth]'") from None
        device = self.opts["device"]
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model = self.opts["model"]
        kw = {} if Path(model).is_dir() else {"revision": self.opts["revision"]}
        try:
            processor = AutoImageProcessor.from_pretrained(model, **kw)
            net = AutoModelForDepthEstimation.from_pretrained(model, **kw).to(device).eval()
        except (OSError, ValueError) as e:
            raise ControlError(f"cannot load the depth model {model!r}: {e}. Download it once where the hub is "
                               f"reachable (`huggingface-cli download {DEFAULT_MODEL}`) or give a local folder "
                               "with --control-opt depth.model=PATH") from None
        self._model = (torch, processor, net, device)
        return self._model

    def frames(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        torch, processor, net, device = self._load()
        h, w = frames[0].shape[:2]
        maps = []
        with torch.inference_mode():
            for i in range(0, len(frames), self.opts["batch"]):
                batch = list(frames[i:i + self.opts["batch"]])
                inputs = processor(images=batch, return_tensors="pt").to(device)
                pred = net(**inputs).predicted_depth                  # (B, h', w')
                pred = torch.nn.functional.interpolate(pred[:, None].float(), size=(h, w), mode="bicubic",
                                                       align_corners=False)[:, 0]
                maps.append(pred.cpu().numpy())
        depth = np.concatenate(maps).astype(np.float64)
        lo, hi = float(depth.min()), float(depth.max())
        scaled = np.zeros_like(depth) if hi <= lo else (depth - lo) / (hi - lo) * 255.0
        gray = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
        return [np.repeat(g[:, :, None], 3, axis=2) for g in gray]
