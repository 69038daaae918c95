"""Ingest settings: one dataclass whose defaults are the documented defaults.

Precedence: built-in defaults < TOML file (``--config``) < command-line flags.
The settings that change what a clip looks like are hashed into a fingerprint
stored with every manifest row, so a rerun with other settings redoes the work
instead of mixing two kinds of clips.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from dataclasses import dataclass, fields
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MODES = ("head", "chunk", "uniform")
DETECTORS = ("auto", "transnetv2", "cascade", "adaptive", "none")
# Quality filters (wandata/quality.py, docs/quality.md). "fast" is off by default: very fast
# motion is flagged on the kept clip rather than dropped, since action footage is often wanted.
FILTERS = ("static", "fast", "blur", "dark", "bright", "flat", "text", "duplicate")
DEFAULT_FILTERS = ("static", "blur", "dark", "bright", "flat", "text", "duplicate")


class SettingsError(ValueError):
    """A setting has a value wandata cannot work with; the message says which and why."""


@dataclass(frozen=True)
class Settings:
    # Clip shape. Wan's VAE compresses time 4x after the first frame, so clips are 4k+1 frames.
    frames: int = 81
    fps: float = 16.0
    buckets: tuple[tuple[int, int], ...] = ((832, 480), (480, 832))
    size_multiple: int = 16  # 32 for Wan2.2-TI2V-5B
    # Windows per shot.
    mode: str = "chunk"
    windows_per_shot: int = 3  # for mode=uniform
    # Shot detection.
    detector: str = "auto"  # transnetv2 on a GPU, cascade on a CPU
    threshold: float = 0.5
    boundary_trim_s: float = 0.25  # dropped at each side of every shot boundary
    device: str = "auto"
    # Sources smaller than this fraction of the bucket (after cover scaling) are dropped;
    # between it and 1.0 the clip is kept but flagged as upscaled.
    min_source_scale: float = 0.75
    min_source_duration_s: float = 0.5
    # Encoding.
    crf: int = 18
    preset: str = "medium"
    workers: int = 1
    # Quality filters: a window failing an enabled filter is dropped before it is encoded; one
    # failing a disabled filter is kept with a flag. Defaults are justified in docs/quality.md.
    filters: tuple[str, ...] = DEFAULT_FILTERS
    min_motion: float = 0.2        # % of frame width per second (optical flow)
    max_motion: float = 40.0
    min_sharpness: float = 15.0    # variance of the Laplacian of luma at 320 px width
    min_brightness: float = 25.0   # mean luma, 0-255 code values
    max_brightness: float = 230.0
    min_contrast: float = 10.0     # standard deviation of luma
    max_text: float = 0.02         # fraction of the frame covered by static text-like regions
    max_duplicate_distance: int = 6   # of 64 perceptual-hash bits
    # Black bars: rows/columns whose brightest pixel stays below this luma in every sample.
    border_luma: int = 32
    crop_borders: bool = True

    # Settings that change a clip's pixels or timing; the rest (device, workers) do not.
    OUTPUT_KEYS = (
        "frames", "fps", "buckets", "size_multiple", "mode", "windows_per_shot", "detector",
        "threshold", "boundary_trim_s", "min_source_scale", "min_source_duration_s", "crf", "preset",
        "filters", "min_motion", "max_motion", "min_sharpness", "min_brightness", "max_brightness",
        "min_contrast", "max_text", "max_duplicate_distance", "border_luma", "crop_borders",
    )

    def __post_init__(self):
        object.__setattr__(self, "buckets", tuple(tuple(int(v) for v in b) for b in self.buckets))
        if isinstance(self.filters, str):  # "static,blur" from a flag or a TOML string
            object.__setattr__(self, "filters", tuple(f for f in self.filters.split(",") if f.strip()))
        object.__setattr__(self, "filters", tuple(f.strip() for f in self.filters))
        self.validate()

    def validate(self) -> None:
        if self.frames < 1 or (self.frames - 1) % 4 != 0:
            lo = max(1, (self.frames - 1) // 4 * 4 + 1)
            raise SettingsError(
                f"frames={self.frames} is not of the form 4k+1 (Wan's VAE needs it); "
                f"use {lo} or {lo + 4}")
        if self.fps <= 0:
            raise SettingsError(f"fps={self.fps} must be positive (Wan trains at 16)")
        if self.mode not in MODES:
            raise SettingsError(f"mode={self.mode!r}: choose one of {', '.join(MODES)}")
        if self.detector not in DETECTORS:
            raise SettingsError(f"detector={self.detector!r}: choose one of {', '.join(DETECTORS)}")
        if not self.buckets:
            raise SettingsError("no buckets: give at least one WIDTHxHEIGHT")
        for w, h in self.buckets:
            if w <= 0 or h <= 0 or w % self.size_multiple or h % self.size_multiple:
                raise SettingsError(
                    f"bucket {w}x{h}: both sides must be positive multiples of {self.size_multiple} "
                    f"(Wan's VAE and patching need it; 32 for Wan2.2-TI2V-5B)")
        if self.windows_per_shot < 1:
            raise SettingsError("windows_per_shot must be at least 1")
        if not 0 < self.min_source_scale <= 1:
            raise SettingsError("min_source_scale must be in (0, 1]")
        if self.boundary_trim_s < 0:
            raise SettingsError("boundary_trim_s must be >= 0")
        if self.workers < 1:
            raise SettingsError("workers must be at least 1")
        unknown = sorted(set(self.filters) - set(FILTERS))
        if unknown:
            raise SettingsError(f"filters: unknown {', '.join(unknown)}; choose from {', '.join(FILTERS)}")

    def fingerprint(self) -> str:
        d = {k: getattr(self, k) for k in self.OUTPUT_KEYS}
        return hashlib.sha1(json.dumps(d, sort_keys=True, default=list).encode()).hexdigest()[:12]

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["buckets"] = [f"{w}x{h}" for w, h in self.buckets]
        return d

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def parse_bucket(text: str) -> tuple[int, int]:
    try:
        w, h = text.lower().split("x")
        return int(w), int(h)
    except ValueError:
        raise SettingsError(f"bucket {text!r}: write it as WIDTHxHEIGHT, e.g. 832x480") from None


def _coerce(name: str, value):
    if name == "buckets":
        return tuple(parse_bucket(v) if isinstance(v, str) else tuple(v) for v in value)
    return value


def load_settings(config_path: str | Path | None = None, **overrides) -> Settings:
    """Defaults, then the TOML file's ``[ingest]`` table (or top level), then overrides."""
    known = {f.name for f in fields(Settings)}
    values: dict = {}
    if config_path is not None:
        path = Path(config_path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SettingsError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as e:
            raise SettingsError(f"config file {path} is not valid TOML: {e}") from None
        data = data.get("ingest", data)
        unknown = sorted(set(data) - known)
        if unknown:
            raise SettingsError(
                f"config file {path}: unknown setting(s) {', '.join(unknown)}; "
                f"`wandata config show` lists the valid ones")
        values.update({k: _coerce(k, v) for k, v in data.items()})
    values.update({k: _coerce(k, v) for k, v in overrides.items() if v is not None})
    return Settings(**values)
