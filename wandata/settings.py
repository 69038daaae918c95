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
import math
import re
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

from wandata import profiles

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MODES = ("head", "chunk", "uniform")
BUILTIN_DETECTORS = ("auto", "transnetv2", "cascade", "adaptive", "none")


def _plugin_detectors() -> tuple[str, ...]:
    # Read from the package metadata, not by importing wandata.detect (which sits above this
    # module): a detector registered under the entry point group is a valid --detector.
    from importlib.metadata import entry_points
    return tuple(sorted({ep.name for ep in entry_points(group="wandata.detectors")} - set(BUILTIN_DETECTORS)))


DETECTORS = BUILTIN_DETECTORS + _plugin_detectors()
# Quality filters (wandata/quality/, docs/quality.md). "fast" is off by default: very fast
# motion is flagged on the kept clip rather than dropped, since action footage is often wanted.
FILTERS = ("static", "fast", "blur", "dark", "bright", "flat", "text", "duplicate")
DEFAULT_FILTERS = ("static", "blur", "dark", "bright", "flat", "text", "duplicate")


# x264's presets, fastest first (``x264 --help``); the encoder refuses anything else.
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
           "veryslow", "placebo")
# The two built-ins that never load the shot model; a plugin detector gets --threshold and
# --device when its constructor takes them (detect/registry.py).
_NO_MODEL_DETECTORS = ("adaptive", "none")
USES_SHOT_MODEL = (lambda s: s.detector not in _NO_MODEL_DETECTORS,
                   "the adaptive and none detectors use no shot model")
# Frame rates Wan models are trained at: a dataset at another rate teaches the model another speed.
WAN_FPS = "Wan2.1 trains at 16 fps, Wan2.2-TI2V-5B at 24"
DEVICE_FORMS = "auto, cpu, cuda or cuda:N"


class SettingsError(ValueError):
    """A setting has a value wandata cannot work with; the message says which and why.

    ``key`` is the setting's name (None for a problem that is no one setting's); ``from_file``
    says whether the value came from a TOML file, so the command line can name the flag only
    when the value was a flag's."""

    def __init__(self, message: str, key: str | None = None, from_file: bool = False):
        super().__init__(message)
        self.key, self.from_file, self.profile = key, from_file, False


@dataclass(frozen=True)
class Range:
    """A closed or half-open interval; ``None`` is unbounded."""
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, v) -> bool:
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return not (self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi))

    def __str__(self) -> str:
        if self.hi is None:
            return f"{'>' if self.lo_open else '>='} {self.lo:g}"
        return (f"{'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}")


def setting(default, flag: str, help: str, range: Range | None = None, choices: tuple | None = None,
            why: str = "", output: bool = True, applies=None):
    """A field of ``Settings`` with everything the command line and the checks need: one table,
    so that ``ingest``, ``plan``, ``--dry-run`` and a TOML file cannot disagree about a setting.
    ``output``: the setting changes a clip's pixels or timing (it goes into the fingerprint).
    ``applies``: ``(predicate(settings), "when it applies")`` for a setting that only some other
    settings use; a flag given where it has no effect is refused (a TOML file may hold them all)."""
    meta = {"flag": flag, "help": help, "range": range, "choices": choices, "why": why, "output": output,
            "applies": applies}
    return field(default=default, metadata=meta)


_DEFAULT = profiles.get(profiles.DEFAULT)


@dataclass(frozen=True)
class Settings:
    # The model the clips are for (wandata/profiles.py): it sets frames, fps, buckets and
    # size_multiple, and the values given must fit it (docs/profiles.md). Not in the
    # fingerprint: its values are, and two profiles with the same values make the same clips.
    profile: str = setting(profiles.DEFAULT, "--profile", "Model the clips are for; sets --fps, --frames, "
                           "--bucket and --size-multiple (`wandata profiles` lists them).",
                           choices=profiles.NAMES, output=False)
    allow_profile_mismatch: bool = setting(
        False, "--allow-profile-mismatch", "Take --fps/--frames/--bucket/--size-multiple values that do "
        "not fit --profile.", output=False,
        applies=(lambda s: bool(s.profile_misfits()), "every value fits the profile"))
    # Clip shape. Wan's VAE compresses time 4x after the first frame, so clips are 4k+1 frames.
    frames: int = setting(_DEFAULT.frames, "--frames", "Frames per clip, 4k+1 up to the profile's "
                          "length (1, 5, ..., 81; 121 for wan2.2-ti2v-5b).")
    fps: float = setting(_DEFAULT.fps, "--fps", "Output frame rate.", Range(0, 120, lo_open=True), why=WAN_FPS)
    buckets: tuple[tuple[int, int], ...] = setting(
        _DEFAULT.buckets, "--bucket", "Bucket WIDTHxHEIGHT; repeat for several.")
    size_multiple: int = setting(_DEFAULT.size_multiple, "--size-multiple", "Bucket sides must be multiples of "
                                 "this; a multiple of 16 (32 for Wan2.2-TI2V-5B).", Range(16),
                                 why="Wan's VAE downsamples 8x and the DiT patches 2x2")
    # Windows per shot.
    mode: str = setting("chunk", "--mode", "Windows per shot: head, chunk or uniform.", choices=MODES)
    windows_per_shot: int = setting(3, "--windows", "Windows per shot for --mode uniform.", Range(1),
                                    applies=(lambda s: s.mode == "uniform", "only --mode uniform uses it"))
    # Shot detection.
    detector: str = setting("auto", "--detector", "Shot detector (auto: transnetv2 on a GPU, cascade on a "
                            "CPU).", choices=DETECTORS)
    threshold: float = setting(0.5, "--threshold", "Transition probability threshold for transnetv2.",
                               Range(0, 1, lo_open=True, hi_open=True),
                               why="a probability: 0 would cut every frame, 1 none", applies=USES_SHOT_MODEL)
    boundary_trim_s: float = setting(0.25, "--trim", "Seconds dropped at each side of every shot boundary.",
                                     Range(0, 5), why="more than 5 s would leave almost no shot usable")
    device: str = setting("auto", "--device", f"Device for the shot model: {DEVICE_FORMS}.", output=False,
                          applies=USES_SHOT_MODEL)
    # Sources smaller than this fraction of the bucket (after cover scaling) are dropped;
    # between it and 1.0 the clip is kept but flagged as upscaled.
    min_source_scale: float = setting(0.75, "--min-source-scale", "Drop sources that would need upscaling "
                                      "beyond 1/this.", Range(0, 1, lo_open=True))
    min_source_duration_s: float = setting(0.5, "--min-source-duration", "Drop sources shorter than this "
                                           "many seconds.", Range(0))
    # Encoding.
    crf: int = setting(18, "--crf", "x264 quality, lower is better.", Range(0, 51),
                       why="libx264's range for 8-bit video; 0 is lossless")
    preset: str = setting("medium", "--preset", "x264 preset (slower: smaller files, same quality).",
                          choices=PRESETS)
    workers: int = setting(1, "--workers", "Sources processed in parallel (--engine local).", Range(1),
                           output=False)
    threads: int = setting(0, "--threads", "Threads one source may use (decoders, x264, OpenCV, torch); 0: "
                           "each library's default (all cores). With --workers N on C cores, C/N keeps "
                           "them from fighting over the cores.", Range(0), output=False)
    # Quality filters: a window failing an enabled filter is dropped before it is encoded; one
    # failing a disabled filter is kept with a flag. Defaults are justified in docs/quality.md.
    filters: tuple[str, ...] = setting(DEFAULT_FILTERS, "--filters", "Quality filters that drop, comma-"
                                       f"separated from {','.join(FILTERS)} (\"\" for none).")
    min_motion: float = setting(0.2, "--min-motion", "Static below this (% of frame width per second).",
                                Range(0))
    max_motion: float = setting(40.0, "--max-motion", "Fast above this (% of frame width per second).",
                                Range(0, lo_open=True))
    min_sharpness: float = setting(15.0, "--min-sharpness", "Blurred below this variance of the Laplacian.",
                                   Range(0))
    min_brightness: float = setting(25.0, "--min-brightness", "Dark below this mean luma.", Range(0, 255))
    max_brightness: float = setting(230.0, "--max-brightness", "Bright above this mean luma.", Range(0, 255))
    min_contrast: float = setting(10.0, "--min-contrast", "Flat below this luma standard deviation.",
                                  Range(0))
    max_text: float = setting(0.02, "--max-text", "Burned-in text above this fraction of the frame.",
                              Range(0, 1))
    max_duplicate_distance: int = setting(6, "--max-duplicate-distance", "Near-duplicates at or below this "
                                          "many of 64 perceptual-hash bits.", Range(0, 64))
    # Black bars: rows/columns whose brightest pixel stays below this luma in every sample.
    border_luma: int = setting(32, "--border-luma", "Black-bar rows/columns stay below this luma.",
                               Range(0, 255))
    crop_borders: bool = setting(True, "--crop-borders", "Crop black bars before bucketing.")

    def __post_init__(self):
        object.__setattr__(self, "buckets", tuple(tuple(int(v) for v in b) for b in self.buckets))
        if isinstance(self.filters, str):  # "static,blur" from a flag or a TOML string
            object.__setattr__(self, "filters", tuple(f for f in self.filters.split(",") if f.strip()))
        object.__setattr__(self, "filters", tuple(f.strip() for f in self.filters))
        for f in fields(self):
            v = getattr(self, f.name)
            # TOML writes 16 for 16.0: the same setting must give the same fingerprint.
            if isinstance(f.default, float) and isinstance(v, int) and not isinstance(v, bool):
                object.__setattr__(self, f.name, float(v))
        self.validate()

    def validate(self) -> None:
        """Every value, whether from a flag, a TOML file or Python: its type, its range, then the
        rules that tie settings together."""
        for f in fields(self):
            _check(f, getattr(self, f.name))
        if self.frames < 1 or (self.frames - 1) % 4 != 0:
            lo = max(1, (self.frames - 1) // 4 * 4 + 1)
            raise SettingsError(
                f"frames={self.frames} is not of the form 4k+1 (Wan's VAE needs it); "
                f"use {lo} or {lo + 4}", "frames")
        if self.size_multiple % 16:
            raise SettingsError(f"size_multiple={self.size_multiple}: must be a multiple of 16 (Wan's VAE "
                                "downsamples 8x and the DiT patches 2x2; 32 for Wan2.2-TI2V-5B)",
                                "size_multiple")
        if not self.device == "auto" and not re.fullmatch(r"cpu|cuda(:\d+)?", self.device):
            raise SettingsError(f"device={self.device!r}: choose {DEVICE_FORMS}", "device")
        if not self.buckets:
            raise SettingsError("no buckets: give at least one WIDTHxHEIGHT", "buckets")
        for w, h in self.buckets:
            if w <= 0 or h <= 0 or w % self.size_multiple or h % self.size_multiple:
                raise SettingsError(
                    f"bucket {w}x{h}: both sides must be positive multiples of {self.size_multiple} "
                    f"(Wan's VAE and patching need it; 32 for Wan2.2-TI2V-5B)", "buckets")
        unknown = sorted(set(self.filters) - set(FILTERS))
        if unknown:
            raise SettingsError(f"filters: unknown {', '.join(unknown)}; choose from {', '.join(FILTERS)}",
                                "filters")
        for lo, hi in (("min_motion", "max_motion"), ("min_brightness", "max_brightness")):
            if getattr(self, lo) >= getattr(self, hi):
                raise SettingsError(f"{lo}={getattr(self, lo):g} must be below {hi}={getattr(self, hi):g}", lo)

    def profile_misfits(self, size_multiple: bool = True) -> list[tuple[str, str]]:
        """(setting, why) for each clip-shape setting that does not fit the profile
        (``size_multiple``: whether to check that setting too)."""
        return profiles.get(self.profile).misfits(self.fps, self.frames, self.buckets,
                                                  self.size_multiple if size_multiple else None)

    def check_profile(self, size_multiple: bool = True) -> "Settings":
        """Refuse values that do not fit the profile, unless ``allow_profile_mismatch``. Done where
        settings come from a user (``load_settings``: flags and TOML files); a ``Settings`` built
        in Python is taken as given (``Settings.for_profile`` starts from a profile's values)."""
        if not self.allow_profile_mismatch:
            for key, why in self.profile_misfits(size_multiple):
                which = "the default; --profile chooses another" if self.profile == profiles.DEFAULT else "--profile"
                raise SettingsError(f"{key}={_show(key, getattr(self, key))} does not fit profile {self.profile} "
                                    f"({which}): {why}; leave it out to take the profile's value, choose a "
                                    "profile it fits (`wandata profiles`), or pass --allow-profile-mismatch", key)
        return self

    @classmethod
    def for_profile(cls, name: str, **changes) -> "Settings":
        """The settings of a profile (its fps, frames, buckets, size multiple), then ``changes``."""
        return cls(**{**profiles.values(name), "profile": name, **changes})

    def fingerprint(self) -> str:
        d = {k: getattr(self, k) for k in OUTPUT_KEYS}
        return hashlib.sha1(json.dumps(d, sort_keys=True, default=list).encode()).hexdigest()[:12]

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["buckets"] = [f"{w}x{h}" for w, h in self.buckets]
        return d

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


# Settings that change a clip's pixels or timing; the rest (device, workers) do not.
OUTPUT_KEYS = tuple(f.name for f in fields(Settings) if f.metadata["output"])
Settings.OUTPUT_KEYS = OUTPUT_KEYS


def _show(key: str, v) -> str:
    return " ".join(f"{w}x{h}" for w, h in v) if key == "buckets" else f"{v:g}"


def _check(f, v) -> None:
    """Type, choices and range of one setting, from its field's metadata."""
    meta, name = f.metadata, f.name
    kind = type(f.default)
    if kind is bool:
        ok = isinstance(v, bool)
    elif kind is int:
        ok = isinstance(v, int) and not isinstance(v, bool)
    elif kind is float:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    elif kind is str:
        ok = isinstance(v, str)
    else:
        ok = isinstance(v, tuple)
    if not ok:
        what = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}.get(kind, "a list")
        raise SettingsError(f"{name}={v!r}: must be {what}", name)
    if meta["choices"] and v not in meta["choices"]:
        raise SettingsError(f"{name}={v!r}: choose one of {', '.join(meta['choices'])}", name)
    r = meta["range"]
    if r is not None and v not in r:
        why = f" ({meta['why']})" if meta["why"] else ""
        raise SettingsError(f"{name}={v:g} is out of range: valid {r}{why}", name)


def parse_bucket(text: str) -> tuple[int, int]:
    try:
        w, h = text.lower().split("x")
        return int(w), int(h)
    except ValueError:
        raise SettingsError(f"bucket {text!r}: write it as WIDTHxHEIGHT, e.g. 832x480") from None


def _coerce(name: str, value):
    if name == "buckets":
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise SettingsError(f"buckets={value!r}: a list of \"WIDTHxHEIGHT\" strings", "buckets")
        return tuple(parse_bucket(v) if isinstance(v, str) else tuple(v) for v in value)
    if name == "filters" and isinstance(value, list):
        return tuple(value)
    return value


def load_settings(config_path: str | Path | None = None, **overrides) -> Settings:
    """Defaults, then the chosen profile's values (``profile`` from the overrides, else from
    the file), then the TOML file's ``[ingest]`` table (or top level), then overrides.
    The file's values are checked on their own first, so an error names the file when the
    bad value is the file's and the setting (the flag) when it is an override's."""
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
        try:
            values.update({k: _coerce(k, v) for k, v in data.items()})
            _with_profile(values.get("profile"), values)
        except (SettingsError, TypeError, ValueError) as e:
            raise SettingsError(f"config file {path}: {e}", getattr(e, "key", None), from_file=True) from None
    given = {k: _coerce(k, v) for k, v in overrides.items() if v is not None}
    try:
        return _with_profile(given.get("profile", values.get("profile")), {**values, **given})
    except SettingsError as e:
        if e.key in values and e.key not in given and e.profile:  # the file's value, the flag's profile
            raise SettingsError(f"config file {config_path}: {e}", e.key, from_file=True) from None
        raise


def _with_profile(name, values: dict) -> Settings:
    """The chosen profile's values (none chosen: the default's, which are the fields' defaults),
    then ``values``, checked to fit the profile. The fit is checked before the profile's size
    multiple applies, so a bucket that is no multiple of it is refused as a misfit (naming the
    profile) rather than by the multiple alone."""
    base = profiles.values(name) if name in profiles.PROFILES else {}
    trial = Settings(**{**{k: v for k, v in base.items() if k != "size_multiple"}, **values})
    try:
        trial.check_profile(size_multiple="size_multiple" in values)
    except SettingsError as e:
        e.profile = True
        raise
    return Settings(**{**base, **values})
