"""Lint a Wan training set the way its trainer will read it.

Works on our exports and on hand-made metadata (DiffSynth csv/json/jsonl, musubi-tuner
TOML/JSONL, diffusion-pipe TOML + caption files, any registered format's files, or a bare
wandata dataset directory); each format's own reader (``registry.load(name).read``) turns its
files into rows. Every clip is decoded (``verify.decode_clip``, PyAV), so what is checked
is what a trainer's loader sees, not what a container header claims.

Paths in files wandata wrote (the manifest, an export and its settings) must stay inside
the folder they belong to: the dataset for clips (the export folder for diffusion-pipe's
linked clips), the settings file's folder for the metadata it names. One that does not is
reported as ``path_outside_root`` and not opened. Hand-made metadata is checked where its
paths lead: the user named it, and check only reads.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from wandata import profiles
from wandata.confine import is_inside
from wandata.dataset import review
from wandata.dataset.manifest import MANIFEST_NAME, Manifest
from wandata.dataset.records import KEPT, ClipRecord
from wandata.export import registry
from wandata.export.common import (MISSING, PANDAS_NA, SETTINGS_NAME, VIDEO_EXTS, CheckError, ExportError,
                                   Problem, Row, csv_hazard, outside, read_settings, read_toml, under)
from wandata.export.diffsynth import METADATA_NAMES, read_metadata
from wandata.media.verify import Decoded, decode_clip

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
SETTINGS_KEYS = ("num_frames", "fps", "height", "width", "max_pixels", "resolution_mode", "profile")

__all__ = ["CheckError", "Problem", "Row", "Target", "check", "resolve"]


@dataclass
class Target:
    rows: list[Row]
    base: Path                       # relative video paths are joined to this
    metadata: list[str]
    settings: dict                   # num_frames, height, width, max_pixels, fps (any may be absent)
    records: dict[str, ClipRecord]   # resolved path -> manifest record, when a manifest is found
    problems: list[Problem] = field(default_factory=list)
    root: Path | None = None         # every clip must lie inside it (files wandata wrote)


# --- reading the target ----------------------------------------------------------------------

def _manifest_rows(dataset: Path) -> list[Row]:
    return [Row(f"{MANIFEST_NAME} clip {c.clip_id}", c.path, c.caption, False, "manifest")
            for c in review.reviewed(dataset, Manifest(dataset).all_clips()) if c.status == KEPT]


def _records(dataset: Path) -> dict[str, ClipRecord]:
    if not (dataset / MANIFEST_NAME).exists():
        return {}
    out = {}
    for c in review.reviewed(dataset, Manifest(dataset).all_clips()):
        if c.status == KEPT and c.path and is_inside(dataset, c.path):
            out[str((dataset / c.path).resolve())] = c
            out.setdefault(Path(c.path).name, c)   # hard-linked copies (diffusion-pipe export)
    return out


def _from_settings(path: Path) -> Target:
    try:
        s = read_settings(path)
        fmt = registry.load(s["format"])
    except ExportError as e:
        raise CheckError(str(e)) from None
    base = Path(s["dataset_base_path"])
    rows, problems, names = [], [], []
    for key, split in (("metadata_path", "train"), ("validation_metadata_path", "validation")):
        if not s.get(key):
            continue
        meta = Path(s[key])
        names.append(str(meta))
        if not meta.exists():
            problems.append(Problem("missing_file", f"{meta.name}, named in {path.name}, does not exist",
                                    "re-run `wandata export`", str(meta)))
            continue
        r, p, _ = fmt.read(meta, split, path.parent)
        rows, problems = rows + r, problems + p
    settings = {k: s.get(k) for k in SETTINGS_KEYS}
    return Target(rows, base, names, settings, _records(base), problems, fmt.clip_root(path, base))


def resolve(target: Path, base_path: Path | None = None) -> Target:
    """What to check for a directory or file the user named."""
    target = Path(target)
    if target.is_dir():
        if (target / SETTINGS_NAME).exists():
            return _from_settings(target / SETTINGS_NAME)
        metas = [target / n for n in METADATA_NAMES if (target / n).exists()]
        if metas:
            return _from_files(metas, base_path or target)
        if (target / MANIFEST_NAME).exists():
            return _from_manifest(target)
        raise CheckError(f"{target} has no {SETTINGS_NAME}, metadata.csv/json/jsonl or {MANIFEST_NAME}; "
                         "name a metadata file, or run `wandata export` first")
    if not target.exists():
        raise CheckError(f"{target} does not exist")
    if target.name == SETTINGS_NAME:
        return _from_settings(target)
    if target.name == MANIFEST_NAME:
        return _from_manifest(target.parent)
    if target.suffix == ".toml":
        return _from_toml(target)
    return _from_files([target], base_path or target.parent)


def _from_manifest(dataset: Path) -> Target:
    return Target(_manifest_rows(dataset), dataset, [str(dataset / MANIFEST_NAME)], {}, _records(dataset),
                  root=dataset)


def _from_files(metas: list[Path], base: Path) -> Target:
    rows, problems = [], []
    for m in metas:
        r, p = read_metadata(m, "validation" if m.stem.endswith("_val") else "train")
        rows, problems = rows + r, problems + p
    settings, root = {}, None
    beside = metas[0].parent / SETTINGS_NAME
    if beside.exists():
        try:
            s = read_settings(beside)
            if str(metas[0].resolve()) in (s.get("metadata_path"), s.get("validation_metadata_path")):
                settings = {k: s.get(k) for k in SETTINGS_KEYS}
                root = base   # our export: its clips are the dataset's
        except ExportError:
            pass
    return Target(rows, base, [str(m) for m in metas], settings, _records(base), problems, root)


def _from_toml(path: Path) -> Target:
    data = read_toml(path)
    fmt = next((f for f in registry.installed() if f.claims(data)), None)
    if fmt is None:
        raise CheckError(f"{path} is neither a musubi-tuner ([[datasets]]) nor a diffusion-pipe "
                         "([[directory]]) dataset config")
    rows, problems, _ = fmt.read(path, "train")
    return Target(rows, path.parent, [str(path)], {}, {}, problems)


# --- the checks --------------------------------------------------------------------------------

def _prompt_problems(row: Row, file: str) -> list[Problem]:
    p = row.prompt
    if p is MISSING or p is None or (isinstance(p, float) and p != p):
        return [Problem("empty_prompt", "no prompt", "write a caption for the clip", file, row.where)]
    if not isinstance(p, str):
        return [Problem("non_text_prompt", f"prompt is {type(p).__name__} {p!r}, not text",
                        "write the prompt as a JSON string", file, row.where)]
    if row.csv and (why := csv_hazard(p)):
        code = "nan_prompt" if p in PANDAS_NA else "numeric_prompt"
        return [Problem(code, f"prompt {p!r}: {why}, and DiffSynth's text encoder fails on it",
                        "reword the caption, or export as jsonl (`wandata export --format jsonl`), "
                        "which keeps any text", file, row.where)]
    if not p.strip():
        return [Problem("empty_prompt", "prompt is blank", "write a caption for the clip", file, row.where)]
    return []


def _video_path(row: Row, base: Path, root: Path | None = None) -> tuple[Path | None, Problem | None]:
    v = row.video
    if not isinstance(v, str) or v == "" or (row.csv and v in PANDAS_NA):
        return None, Problem("missing_video_path", f"no video path (cell is {v!r})",
                             "fill in the clip's path", "", row.where)
    path = Path(v) if os.path.isabs(v) else base / v
    if root is not None and not under(root, path):
        return None, outside(v, root, "", row.where)
    ext = path.suffix.lower()
    if ext not in VIDEO_EXTS + IMAGE_EXTS:
        return path, Problem("unsupported_extension", f"{v}: DiffSynth has no loader for '{ext}' files",
                             f"convert it to one of {', '.join(VIDEO_EXTS)}", str(path), row.where)
    if not path.is_file():
        return path, Problem("missing_file", f"{v} does not exist (looked in {base})",
                             "restore the file or remove its row; check the dataset base path", str(path), row.where)
    return path, None


def _text(prompt) -> str | None:
    return prompt if isinstance(prompt, str) else None  # no prompt, however spelled


def _duplicates(rows: list[Row], paths: list[Path | None]) -> list[Problem]:
    out, seen_row, seen_video = [], {}, {}
    for row, path in zip(rows, paths):
        if path is None:
            continue
        key = str(path.resolve())
        first = seen_video.get(key)
        if first is None:
            seen_video[key] = row
            seen_row[(key, _text(row.prompt))] = row
            continue
        if first.split != row.split:
            out.append(Problem("train_validation_overlap", f"{row.video} is in both training and validation",
                               "re-export with --split so each clip is on one side", str(path), row.where))
        elif (key, _text(row.prompt)) in seen_row:
            out.append(Problem("duplicate_row", f"same video and prompt as {first.where}",
                               "remove the repeated row (use the trainer's repeat option to weight clips)",
                               str(path), row.where))
        else:
            out.append(Problem("duplicate_video", f"{row.video} is also listed at {first.where} with another prompt",
                               "keep one row per clip", str(path), row.where))
    return out


def _source_overlap(rows: list[Row], paths: list[Path | None], records: dict) -> list[Problem]:
    sides: dict[str, set] = {}
    for row, path in zip(rows, paths):
        rec = records.get(str(path.resolve())) if path else None
        if rec is not None:
            sides.setdefault(rec.source_id, set()).add(row.split)
    both = sorted(s for s, v in sides.items() if {"train", "validation"} <= v)
    return [Problem("source_in_both_splits", f"source {s} has clips in training and validation",
                    "split by source: `wandata export --split FRACTION`") for s in both]


def _expected(row: Row, path: Path, records: dict) -> tuple[dict, str]:
    rec = records.get(str(path.resolve())) or records.get(path.name)
    if rec is not None:
        return {"num_frames": rec.num_frames, "width": rec.width, "height": rec.height, "fps": rec.fps}, MANIFEST_NAME
    return row.expect, "the metadata"


def _recorded_profile(t: Target) -> str | None:
    """The profile the export names, else those the dataset's manifest records (None if neither)."""
    if t.settings.get("profile"):
        return t.settings["profile"]
    if (t.base / MANIFEST_NAME).is_file():
        return "/".join(Manifest(t.base).profiles()) or None
    return None


def _decoded_problems(path: Path, d: Decoded, expect: dict, said: str, s: dict, where: str) -> list[Problem]:
    f, out = str(path), []

    def add(code, msg, fix, severity="error"):
        out.append(Problem(code, msg, fix, f, where, severity))

    if d.frames == 0:
        add("undecodable", f"{path.name} does not decode: {d.error or 'no frames'}",
            "re-encode or remove the clip")
        return out
    if d.error:
        add("decode_errors", f"{path.name}: the decoder reported: {d.error}", "re-encode the clip")
    if "num_frames" in expect and d.frames != expect["num_frames"]:
        add("frame_count", f"{d.frames} frames, but {said} says {expect['num_frames']}",
            "re-encode the clip or fix the metadata")
    n = s.get("num_frames")
    if n and d.frames < n:
        usable = max(1, (d.frames - 1) // 4 * 4 + 1)
        add("too_few_frames", f"{d.frames} frames, fewer than the trainer's num_frames {n}: "
            f"DiffSynth would silently train on {usable}", "drop the clip or lower num_frames")
    elif n and d.frames > n:
        add("extra_frames", f"{d.frames} frames; the trainer reads only the first {n}",
            "trim the clip if the rest matters", "warning")
    fps = expect.get("fps") or s.get("fps")
    if fps and d.frames > 1 and (not d.constant_rate or abs(d.fps - fps) > 1e-3):
        add("fps", f"{d.fps:.3f} fps{'' if d.constant_rate else ' (variable)'}, but "
            f"{said if expect.get('fps') else 'the trainer settings'} say {fps:g}",
            "re-encode at a constant rate; trainers count frames, not seconds")
    if "width" in expect and "height" in expect and (d.width, d.height) != (expect["width"], expect["height"]):
        add("size", f"{d.width}x{d.height}, but {said} says {expect['width']}x{expect['height']}",
            "re-encode the clip or fix the metadata")
    if d.width % 16 or d.height % 16:
        add("not_multiple_of_16", f"{d.width}x{d.height} is not a multiple of 16: DiffSynth crops it to "
            f"{d.width // 16 * 16}x{d.height // 16 * 16}", "re-encode at a multiple of 16")
    h, w, mp = s.get("height"), s.get("width"), s.get("max_pixels")
    if h and w and (d.width, d.height) != (w, h):
        turned = (d.width > d.height) != (w > h) and d.width != d.height
        add("size_vs_settings", f"{d.width}x{d.height}, but the trainer runs at fixed {w}x{h}: it would be "
            + ("cropped to the other orientation" if turned else "cover-scaled and cropped"),
            "use dynamic resolution (no --height/--width, --max_pixels >= every clip's area) "
            "for mixed sizes, or re-encode")
    elif not (h and w) and mp and d.width * d.height > mp:
        add("size_vs_settings", f"{d.width}x{d.height} is over max_pixels {mp}: DiffSynth would downscale it",
            f"raise --max_pixels to at least {d.width * d.height}")
    return out


def _profile_problems(path: Path, d: Decoded, profile: str, recorded: str | None, allow: bool,
                      where: str) -> list[Problem]:
    """How a decoded clip does not fit the model profile the user named (docs/profiles.md)."""
    if d.frames == 0:
        return []
    was = f" (ingested for {recorded})" if recorded else ""
    return [Problem("profile_mismatch", f"{path.name}{was}: {why}",
                    f"re-ingest with --profile {profile}, or pass --allow-profile-mismatch", str(path), where,
                    "warning" if allow else "error")
            for _, why in profiles.get(profile).misfits(fps=d.fps if d.frames > 1 else None, frames=d.frames,
                                                        sizes=[(d.width, d.height)])]


def check(target: Path, num_frames: int | None = None, height: int | None = None, width: int | None = None,
          max_pixels: int | None = None, fps: float | None = None, base_path: Path | None = None,
          jobs: int = 2, profile: str | None = None, allow_profile_mismatch: bool = False) -> dict:
    """Check a dataset; returns a report dict with ``problems`` and ``ok``. ``profile``: every
    clip must fit that model profile (``profile_mismatch`` problems, warnings if allowed)."""
    t = resolve(Path(target), base_path)
    s = dict(t.settings)
    for k, v in (("num_frames", num_frames), ("fps", fps), ("max_pixels", max_pixels)):
        if v is not None:
            s[k] = v
    if height is not None or width is not None:
        s.update(height=height, width=width, resolution_mode="fixed")
    if s.get("resolution_mode") == "dynamic":
        s["height"] = s["width"] = None
    problems = list(t.problems)
    paths = []
    for row in t.rows:
        path, p = _video_path(row, t.base, t.root)
        paths.append(path)
        if p is not None:
            p.file = p.file or row.where
            problems.append(p)
        for p in _prompt_problems(row, str(path) if path else ""):
            if row.split == "manifest":
                p.severity = "warning"  # not exported yet; `wandata export` refuses it then
            problems.append(p)
    problems += _duplicates(t.rows, paths)
    problems += _source_overlap(t.rows, paths, t.records)
    ok_paths = {}
    for row, path in zip(t.rows, paths):
        if path is not None and path.is_file() and path.suffix.lower() in VIDEO_EXTS:
            ok_paths.setdefault(str(path.resolve()), (row, path))
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        decoded = dict(zip(ok_paths, pool.map(lambda rp: decode_clip(rp[1]), ok_paths.values())))
    recorded = _recorded_profile(t) if profile else None
    for key, (row, path) in ok_paths.items():
        expect, said = _expected(row, path, t.records)
        problems += _decoded_problems(path, decoded[key], expect, said, s, row.where)
        if profile:
            problems += _profile_problems(path, decoded[key], profile, recorded, allow_profile_mismatch, row.where)
    errors = sum(p.severity == "error" for p in problems)
    return {"target": str(target), "metadata": t.metadata, "base_path": str(t.base), "profile": profile,
            "settings": {k: s.get(k) for k in ("num_frames", "fps", "height", "width", "max_pixels")},
            "rows": len(t.rows), "videos_decoded": len(decoded), "errors": errors,
            "warnings": len(problems) - errors, "ok": errors == 0,
            "problems": [asdict(p) for p in problems]}
