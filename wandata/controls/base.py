"""The control extractor interface: a picture in, a control picture of the same size out.

An extractor turns every frame of a clip into its control frame (edges, depth, ...). It is
given the clip's decoded frames in order, as RGB ``uint8`` arrays of shape (H, W, 3), and
returns one RGB ``uint8`` array of the same shape per frame. ``key()`` names everything that
decides its output (name, options, ``version``): the control video of a clip is made once per
key and reused by every later export.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np


class ControlError(Exception):
    """A control extractor or a ``--with`` input cannot be used; the message says what to do."""


@dataclass(frozen=True)
class Option:
    """One ``NAME.KEY=VALUE`` option an extractor takes; ``type`` converts the text given."""
    default: Any
    help: str
    type: Callable[[str], Any] = str


class Extractor:
    """Base class: set ``name``, ``options`` and ``version``; implement ``frame`` (one picture at a
    time) or ``frames`` (the whole clip, for a model that batches). ``self.opts`` holds the
    converted options."""

    name: str = ""
    options: dict[str, Option] = {}
    # Raise it whenever the same options would give other pictures (a fix, a new default),
    # so that control videos made before are made again instead of reused.
    version: int = 1

    def __init__(self, **options: Any):
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            valid = ", ".join(f"{self.name}.{k}" for k in self.options) or "none"
            raise ControlError(f"control extractor {self.name!r} has no option {', '.join(unknown)}; "
                               f"its options: {valid}")
        self.opts = {}
        for key, opt in self.options.items():
            value = options.get(key, opt.default)
            try:
                self.opts[key] = opt.type(value) if isinstance(value, str) and opt.type is not str else value
            except (TypeError, ValueError) as e:
                raise ControlError(f"--control-opt {self.name}.{key}={value!r}: {e} ({opt.help})") from None
        self.check()

    def check(self) -> None:
        """Refuse option values that cannot work (``ControlError``)."""

    def key(self) -> dict:
        """What decides the output: two extractors with equal keys make the same pictures."""
        return {"extractor": self.name, "version": self.version,
                "options": json.loads(json.dumps(self.opts, sort_keys=True, default=str))}

    def frame(self, rgb: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def frames(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [self.frame(f) for f in frames]

    def __call__(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The control frames of ``frames``, checked: one per frame, same size, RGB uint8."""
        out = list(self.frames(frames))
        if len(out) != len(frames):
            raise ControlError(f"control extractor {self.name!r} returned {len(out)} frames for {len(frames)}; "
                               "an extractor must return one control frame per frame")
        for i, (a, b) in enumerate(zip(frames, out)):
            if not isinstance(b, np.ndarray) or b.dtype != np.uint8 or b.shape != a.shape:
                got = f"{b.dtype} {b.shape}" if isinstance(b, np.ndarray) else type(b).__name__
                raise ControlError(f"control extractor {self.name!r} returned {got} for frame {i} of shape "
                                   f"{a.shape}; it must return RGB uint8 frames of the input's size")
        return out
