"""Write the curated clips as the files a Wan trainer reads, plus what it must be told.

DiffSynth-Studio (csv/json/jsonl: columns ``video`` and ``prompt``), musubi-tuner (dataset
TOML + JSONL) and diffusion-pipe (clip directory + dataset.toml). Only ``kept`` clips are
exported, with paths relative to the dataset directory where the trainer allows it.
``wandata_export.json`` beside the output records num_frames, buckets and the resolution
mode, so a trainer reads the clips exactly as curated (see docs/export.md).

Every file is written to a temporary name and renamed into place, so a crash never leaves
a half-written metadata file for a trainer to read. An export never writes over what it did
not write, never onto the dataset, and never follows a path read from a file (the manifest,
an earlier ``wandata_export.json``) out of the folder it belongs to (``wandata.atomic``,
``wandata.confine``; docs/export.md, "What export refuses and why").
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import tomli_w

from wandata import __version__
from wandata import atomic
from wandata.atomic import OutputRefused
from wandata.confine import OUTSIDE_ROOT, OutsideRoot, inside
from wandata.dataset.manifest import Manifest
from wandata.dataset.records import KEPT, ClipRecord

DIFFSYNTH_FORMATS = ("csv", "json", "jsonl")
FORMATS = DIFFSYNTH_FORMATS + ("musubi", "diffusion-pipe")
SETTINGS_NAME = "wandata_export.json"
SCHEMA = "wandata.export/1"
# Dynamic mode never upscales, so a max_pixels above every clip's area keeps each clip
# at its own size; 832*480 is Wan's 480p area, the floor the trainer docs assume.
MIN_MAX_PIXELS = 832 * 480
WAN_FPS = 16.0  # the rate diffusion-pipe and musubi resample Wan2.1/2.2-14B videos to

# pandas.read_csv's default na_values (pandas/_libs/parsers.pyx STR_NA_VALUES, pandas 2 and
# 3). Copied, not imported: pandas is DiffSynth's dependency, not ours. Matching is exact
# and ignores CSV quoting, so no CSV spelling of these words reads back as the word.
PANDAS_NA = frozenset({
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
    "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
})
PANDAS_BOOL = frozenset({"True", "TRUE", "true", "False", "FALSE", "false"})


class ExportError(Exception):
    """What failed; ``items`` lists the clips or rows it failed on."""

    def __init__(self, message: str, items: list[str] | None = None):
        super().__init__(message)
        self.items = list(items or [])


@dataclass
class Item:
    clip: ClipRecord
    video: str    # POSIX path relative to the dataset directory
    prompt: str
    file: Path | None = None   # the clip's file, resolved and checked to lie inside the dataset


def refusal(code: str, message: str, **where) -> dict:
    """One refused row of an export (``summary["refused"]``)."""
    return {"code": code, "message": message, **where}


def csv_hazard(text: str) -> str:
    """Why pandas' default ``read_csv`` would not return ``text`` unchanged ('' if it would)."""
    if text == "":
        return "pandas reads an empty cell as NaN"
    if text in PANDAS_NA:
        return f"pandas reads {text!r} as NaN, quoted or not"
    if text in PANDAS_BOOL:
        return "pandas reads it as a boolean when the whole column looks boolean"
    try:
        float(text)
    except ValueError:
        return ""
    # Type inference is per column (per 256k-row chunk), so one numeric prompt can survive
    # beside text ones, but not reliably: refuse them all.
    return "pandas reads it as a number when the whole column looks numeric"


def collect(dataset_dir: Path, fallback_caption: str | None = None,
            refused: list[dict] | None = None) -> list[Item]:
    """The kept clips of the dataset with their prompts, in manifest order.

    A clip whose manifest path leads outside the dataset (``../x``, an absolute path, a
    link pointing out) is left out and appended to ``refused``; the others go on.
    """
    dataset_dir = Path(dataset_dir)
    refused = refused if refused is not None else []
    manifest = Manifest(dataset_dir)
    if not manifest.path.exists():
        raise ExportError(f"no manifest at {manifest.path}: run `wandata ingest SOURCES -o {dataset_dir}` first, "
                          "or point --dataset at a wandata dataset directory")
    kept, files = [], {}
    for c in manifest.all_clips():
        if c.status != KEPT:
            continue
        if c.path:
            try:
                files[c.clip_id] = inside(dataset_dir, c.path, f"clip path of {c.clip_id} in {manifest.path}")
            except OutsideRoot as e:
                refused.append(refusal(OUTSIDE_ROOT, str(e), clip_id=c.clip_id, path=c.path))
                continue
        kept.append(c)
    if not kept:
        why = f" ({len(refused)} refused: their paths lead outside the dataset)" if refused else ""
        raise ExportError(f"{manifest.path} lists no kept clips{why}, so there is nothing to export",
                          [r["message"] for r in refused])
    if fallback_caption is not None and not fallback_caption.strip():
        raise ExportError("--fallback-caption is blank; give the text uncaptioned clips should get")
    uncaptioned = [c for c in kept if not c.caption.strip()]
    if uncaptioned and fallback_caption is None:
        raise ExportError(
            f"{len(uncaptioned)} of {len(kept)} kept clips in {dataset_dir} have no caption: caption them, "
            "or pass --fallback-caption TEXT to give them that text",
            [f"{c.path} ({c.clip_id})" for c in uncaptioned])
    missing = [c for c in kept if not c.path or not files[c.clip_id].is_file()]
    if missing:
        raise ExportError(
            f"{len(missing)} kept clips listed in {manifest.path} have no file: restore them or re-ingest "
            f"their sources (`wandata check {dataset_dir}` lists every problem)",
            [f"{c.path or '(no path)'} ({c.clip_id})" for c in missing])
    frames = Counter(c.num_frames for c in kept)
    if len(frames) > 1:
        raise ExportError(
            f"kept clips have different frame counts ({dict(frames)}); a training run reads one "
            "num_frames, so re-ingest with a single --frames")
    return [Item(c, Path(c.path).as_posix(), c.caption if c.caption.strip() else fallback_caption,
                 files[c.clip_id]) for c in kept]


def split_by_source(items: list[Item], fraction: float) -> tuple[list[Item], list[Item]]:
    """Hold out whole sources until they hold ``fraction`` of the clips.

    Sources are taken in source_id order: a content hash, so the choice looks random
    but is the same on every run and machine. At least one source stays on each side.
    """
    if not 0 < fraction < 1:
        raise ExportError(f"--split must be between 0 and 1 (the validation fraction), not {fraction}")
    by_source: dict[str, list[Item]] = {}
    for it in items:
        by_source.setdefault(it.clip.source_id, []).append(it)
    if len(by_source) < 2:
        raise ExportError(f"--split needs clips from at least 2 sources, and all {len(items)} clips come from one; "
                          "a split by clip would leak the source into both sides")
    held: set[str] = set()
    n_held = 0
    for sid in sorted(by_source)[:-1]:
        if held and n_held >= fraction * len(items):
            break
        held.add(sid)
        n_held += len(by_source[sid])
    return ([it for it in items if it.clip.source_id not in held],
            [it for it in items if it.clip.source_id in held])


def resolution(items: list[Item]) -> dict:
    """How DiffSynth must size frames so that every clip comes out at its own bucket size."""
    sizes = Counter((it.clip.width, it.clip.height) for it in items)
    orientations = Counter(it.clip.orientation or _orientation(it.clip.width, it.clip.height) for it in items)
    max_pixels = max(MIN_MAX_PIXELS, max(w * h for w, h in sizes))
    if len(sizes) == 1:
        (w, h), = sizes
        mode = {"resolution_mode": "fixed", "height": h, "width": w}
    else:
        # Fixed height/width would cover-crop every other bucket to one shape (a portrait
        # clip to landscape); dynamic mode keeps each size when it is under max_pixels.
        mode = {"resolution_mode": "dynamic", "height": None, "width": None}
    buckets = [{"width": w, "height": h, "orientation": _orientation(w, h), "clips": n}
               for (w, h), n in sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))]
    return {"buckets": buckets, "orientations": dict(sorted(orientations.items())),
            "mixed_orientations": len(orientations) > 1, **mode, "max_pixels": max_pixels}


def _orientation(w: int, h: int) -> str:
    return "square" if w == h else ("landscape" if w > h else "portrait")


def _rel(target: Path, start: Path) -> str:
    return Path(os.path.relpath(target.resolve(), start.resolve())).as_posix()


def settings_dict(fmt: str, dataset_dir: Path, settings_path: Path, metadata: Path,
                  validation: Path | None, train: list[Item], val: list[Item],
                  split: dict | None) -> dict:
    """The trainer settings file; paths are relative to the file's own directory."""
    here = settings_path.parent
    allc = train + val
    return {
        "schema": SCHEMA,
        "created_by": f"wandata {__version__}",
        "format": fmt,
        "dataset_base_path": _rel(dataset_dir, here),
        "metadata_path": _rel(metadata, here),
        "validation_metadata_path": _rel(validation, here) if validation else None,
        "num_frames": allc[0].clip.num_frames,
        "fps": allc[0].clip.fps,
        **resolution(allc),
        "num_clips": {"train": len(train), "validation": len(val)},
        "split": split,
    }


def is_settings(path: Path) -> bool:
    """Whether ``path`` is an export settings file: a JSON object with our ``schema``."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("schema") == SCHEMA


def read_settings(path: Path) -> dict:
    """Load a settings file with its paths made absolute (they are stored relative to it).

    ``metadata_path`` and ``validation_metadata_path`` must lie in the settings file's own
    folder (every export writes them there); one that leads elsewhere is refused
    (``OutsideRoot`` in the message), since a trainer would read it and a re-export would
    replace or delete it. ``dataset_base_path`` may be anywhere: the dataset need not be
    near its export, and it is only read.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ExportError(f"cannot read trainer settings {path}: {e}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ExportError(f"{path} is not a wandata export settings file (schema {SCHEMA!r}); "
                          "re-run `wandata export` to write one")
    if data.get("dataset_base_path") is not None:
        data["dataset_base_path"] = str((path.parent / data["dataset_base_path"]).resolve())
    for key in ("metadata_path", "validation_metadata_path"):
        if data.get(key) is not None:
            try:
                data[key] = str(inside(path.parent, str(data[key]), f"{key} in {path}"))
            except OutsideRoot as e:
                raise ExportError(f"{e} (reason code {e.code})") from None
    return data


def diffsynth_args(settings: dict) -> list[str]:
    """The DiffSynth train.py arguments that make it read the export as curated."""
    args = ["--dataset_base_path", settings["dataset_base_path"],
            "--dataset_metadata_path", settings["metadata_path"],
            "--data_file_keys", "video",
            "--num_frames", str(settings["num_frames"])]
    if settings["resolution_mode"] == "fixed":
        args += ["--height", str(settings["height"]), "--width", str(settings["width"])]
    return args + ["--max_pixels", str(settings["max_pixels"])]


# --- writing ---------------------------------------------------------------------------

_write_text = atomic.write_text


def metadata_text(items: list[Item], fmt: str) -> str:
    rows = [{"video": it.video, "prompt": it.prompt} for it in items]
    if fmt == "csv":
        bad = [f"{it.video}: prompt {it.prompt!r}: {why}" for it in items if (why := csv_hazard(it.prompt))]
        if bad:
            raise ExportError(
                f"{len(bad)} prompts cannot go into CSV unchanged: DiffSynth reads CSV with pandas' "
                "default read_csv, which turns them into NaN or numbers and training fails. "
                "Export with --format jsonl (or json) instead: DiffSynth reads those too, and they "
                "carry any text unchanged", bad)
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=["video", "prompt"], lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue()
    # ASCII escapes: DiffSynth opens json/jsonl without an encoding, i.e. in the locale's,
    # and \uXXXX decodes the same in every locale. One object per line, no blank lines:
    # its jsonl reader calls json.loads on every line.
    if fmt == "json":
        return json.dumps(rows, ensure_ascii=True, indent=1) + "\n"
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=True) + "\n" for r in rows)
    raise ExportError(f"unknown metadata format {fmt!r}; choose from {', '.join(DIFFSYNTH_FORMATS)}")


def _pandas_check(items: list[Item]):
    """Read the written CSV back the way DiffSynth does, when pandas is installed."""
    def check(tmp: Path) -> None:
        try:
            import pandas as pd
        except ImportError:
            return
        df = pd.read_csv(tmp)
        got = [df.iloc[i].to_dict() for i in range(len(df))]
        bad = [f"{it.video}: wrote {it.prompt!r}, pandas reads {g.get('prompt')!r}"
               for it, g in zip(items, got) if g.get("prompt") != it.prompt or g.get("video") != it.video]
        if bad or len(got) != len(items):
            raise ExportError("pandas does not read the CSV back unchanged; use --format jsonl", bad)
    return check


def _bucket(c: ClipRecord) -> str:
    return f"{c.width}x{c.height}"


def _by_bucket(items: list[Item]) -> dict[str, list[Item]]:
    out: dict[str, list[Item]] = {}
    for it in items:
        out.setdefault(_bucket(it.clip), []).append(it)
    return out


def musubi_files(dataset_dir: Path, out_dir: Path, items: list[Item], prefix: str = "") -> tuple[dict, dict[str, str]]:
    """(dataset config, {jsonl name: text}) in musubi-tuner's documented format.

    One [[datasets]] per bucket: each has one resolution, which musubi needs because its
    ``resolution`` is a single [width, height]. Paths are absolute: musubi resolves
    relative JSONL paths against the working directory first.
    """
    datasets, files = [], {}
    for name, group in _by_bucket(items).items():
        c = group[0].clip
        jsonl = f"{prefix}{name}.jsonl"
        files[jsonl] = "".join(json.dumps({"video_path": str(it.file or (dataset_dir / it.video).resolve()),
                                           "caption": it.prompt}, ensure_ascii=True) + "\n" for it in group)
        datasets.append({
            "video_jsonl_file": str((out_dir / jsonl).resolve()),
            "cache_directory": str((out_dir / "cache" / f"{prefix}{name}").resolve()),
            "resolution": [c.width, c.height],
            "target_frames": [c.num_frames],
            "frame_extraction": "head",
        })
    # Buckets off: every clip already is exactly its dataset's resolution.
    general = {"batch_size": 1, "num_repeats": 1, "enable_bucket": False, "bucket_no_upscale": False}
    return {"general": general, "datasets": datasets}, files


def _toml(comments: list[str], data: dict) -> str:
    # A line break inside a path would end the comment and leave the rest as TOML.
    head = "".join("# " + c.replace("\r", " ").replace("\n", " ") + "\n" for c in comments)
    return head + "\n" + tomli_w.dumps(data)


def write_musubi(dataset_dir: Path, out_dir: Path, train: list[Item], val: list[Item]) -> None:
    for prefix, items, toml_name in (("", train, "dataset.toml"), ("val_", val, "dataset_val.toml")):
        if not items:
            continue
        config, files = musubi_files(dataset_dir, out_dir, items, prefix)
        for name, text in files.items():
            _write_text(out_dir / name, text)
        header = [f"musubi-tuner dataset config written by wandata {__version__} from {dataset_dir.resolve()}",
                  f"Cache latents and text encoder outputs with --dataset_config {out_dir.resolve() / toml_name}"]
        _write_text(out_dir / toml_name, _toml(header, config))


def dp_frame_bucket(num_frames: int, fps: float, model_fps: float = WAN_FPS) -> int:
    """The longest diffusion-pipe frame bucket every clip of this shape reaches.

    diffusion-pipe counts a video's frames as int(model_fps * duration), the duration as
    the ffmpeg reader prints it, rounded to 1/100 s; 81 frames at 16 fps (5.0625 s) reads
    as 5.06 s, i.e. 80 frames. A bucket longer than the count drops the clip as "too short",
    and buckets are cut to 4n+1 frames when loaded.
    """
    dur = Fraction(num_frames) / Fraction(fps).limit_denominator(1001)
    centis = math.floor(dur * 100 + Fraction(1, 2))
    count = min(math.floor(Fraction(model_fps).limit_denominator(1001) * centis / 100),
                math.floor(num_frames * model_fps / fps), num_frames - 1)
    return max(1, (count - 1) // 4 * 4 + 1)


def _link_or_copy(src: Path, dst: Path) -> str:
    # A hard link costs no space and, unlike a symlink, survives moving the dataset or
    # mounting it elsewhere in a container. Clips are never edited in place (ingest
    # renames new files over old ones), so sharing the inode is safe. Across
    # filesystems, or where links are not allowed, copy.
    try:
        os.link(src, dst)
        return "hardlink"
    except OSError:
        shutil.copy2(src, dst)
        return "copy"


def _dp_directories(root: Path, items: list[Item], sub: str) -> list[tuple[Path, list[Item]]]:
    return [(root / sub / name, group) for name, group in _by_bucket(items).items()]


def _dp_config(dirs: list[tuple[Path, list[Item]]], frame_bucket: int) -> dict:
    first = dirs[0][1][0].clip
    directory = []
    for path, group in dirs:
        c = group[0].clip
        # One directory per bucket with its own single AR bucket and area: diffusion-pipe
        # then resizes nothing. Top-level resolutions must exist: it is read as the default.
        directory.append({"path": str(path.resolve()), "num_repeats": 1,
                          "resolutions": [[c.width, c.height]], "ar_buckets": [[c.width, c.height]],
                          "frame_buckets": [1, frame_bucket]})
    return {"resolutions": [[first.width, first.height]], "enable_ar_bucket": True,
            "frame_buckets": [1, frame_bucket], "directory": directory}


def write_diffusion_pipe(dataset_dir: Path, out_dir: Path, train: list[Item], val: list[Item],
                         settings_text: str) -> dict:
    """Clip directories with same-name .txt captions, dataset.toml (+ eval_dataset.toml).

    Built in a temporary directory beside ``out_dir``, settings file included, and swapped
    in whole (``atomic.replace_dir``), so a trainer never sees a half-filled directory and
    the old export goes only once the new one is complete. ``out_dir`` is replaced only if
    it is new, empty, or an earlier diffusion-pipe export (``OutputRefused`` otherwise).
    """
    out_dir = Path(os.path.abspath(out_dir))
    c0 = (train + val)[0].clip
    bucket = dp_frame_bucket(c0.num_frames, c0.fps)
    methods: Counter = Counter()

    def build(tmp: Path) -> None:
        for sub, items, toml_name in (("train", train, "dataset.toml"), ("val", val, "eval_dataset.toml")):
            if not items:
                continue
            dirs = _dp_directories(out_dir, items, sub)
            for final, group in dirs:
                d = tmp / final.relative_to(out_dir)
                d.mkdir(parents=True)
                for it in group:
                    name = Path(it.video).name
                    if (d / name).exists():
                        raise ExportError(f"two clips are both named {name} in bucket {d.name}; "
                                          "diffusion-pipe pairs captions by file name")
                    methods[_link_or_copy(it.file, d / name)] += 1
                    # diffusion-pipe strips the caption it reads; newlines inside survive.
                    (d / name).with_suffix(".txt").write_text(it.prompt, encoding="utf-8")
            header = [f"diffusion-pipe dataset config written by wandata {__version__} from {dataset_dir.resolve()}",
                      f"frame bucket {bucket}: the longest every clip reaches in diffusion-pipe's count "
                      "(see docs/export.md)"]
            (tmp / toml_name).write_text(_toml(header, _dp_config(dirs, bucket)), encoding="utf-8")
        (tmp / SETTINGS_NAME).write_text(settings_text, encoding="utf-8")

    atomic.replace_dir(out_dir, build, _export_folder("diffusion-pipe"), dataset=dataset_dir,
                       what="diffusion-pipe export", how=_OWNED_HOW)
    return {"frame_bucket": bucket, "linked": dict(methods)}


# --- what is ours ------------------------------------------------------------------------------

_OWNED_HOW = f"an export folder carries {SETTINGS_NAME} with schema {SCHEMA!r} and its format"


def _settings_format(path: Path) -> str | None:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get("format") if isinstance(data, dict) and data.get("schema") == SCHEMA else None


def _export_folder(fmt: str):
    """Whether a folder is an earlier export of this format (only that may be replaced)."""
    def owned(folder: Path) -> bool:
        marker = folder / SETTINGS_NAME
        return not marker.is_symlink() and _settings_format(marker) == fmt
    return owned


def _named_by_settings(path: Path) -> bool:
    """Whether the export settings beside ``path`` name it as their (validation) metadata:
    how a DiffSynth metadata file is known to be ours."""
    settings = path.parent / SETTINGS_NAME
    try:
        data = json.loads(settings.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        return False
    named = {data.get(k) for k in ("metadata_path", "validation_metadata_path")}
    return path.name in named


# --- the whole export --------------------------------------------------------------------

def default_out(dataset_dir: Path, fmt: str) -> Path:
    if fmt in DIFFSYNTH_FORMATS:
        return Path(dataset_dir) / f"metadata.{fmt}"
    return Path(dataset_dir) / "export" / fmt


def _paths(fmt: str, out: Path, has_val: bool) -> tuple[Path, Path, Path | None]:
    """(settings file, metadata, validation metadata) an export to ``out`` writes."""
    if fmt in DIFFSYNTH_FORMATS:
        return out.with_name(SETTINGS_NAME), out, out.with_name(f"{out.stem}_val{out.suffix}") if has_val else None
    val_name = "dataset_val.toml" if fmt == "musubi" else "eval_dataset.toml"
    return out / SETTINGS_NAME, out / "dataset.toml", (out / val_name) if has_val else None


def export(dataset_dir: Path, fmt: str, out: Path | None = None, split: float | None = None,
           fallback_caption: str | None = None) -> dict:
    """Export the dataset; returns a summary (what was written, counts, warnings)."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    dataset_dir = Path(dataset_dir)
    refused: list[dict] = []
    items = collect(dataset_dir, fallback_caption, refused)
    train, val, split_info = items, [], None
    if split is not None:
        train, val = split_by_source(items, split)
        split_info = {"fraction": split, "by": "source_id",
                      "validation_sources": sorted({it.clip.source_id for it in val})}
    out = Path(out) if out is not None else default_out(dataset_dir, fmt)
    if fmt in DIFFSYNTH_FORMATS and out.is_dir():
        out = out / f"metadata.{fmt}"
    if fmt in DIFFSYNTH_FORMATS and out.suffix != f".{fmt}":
        # DiffSynth picks its reader by extension: anything but .json/.jsonl is read as CSV.
        raise ExportError(f"--out {out} must end in .{fmt}: DiffSynth chooses its reader by the extension")
    settings_path, metadata, val_path = _paths(fmt, out, bool(val))
    settings = settings_dict(fmt, dataset_dir, settings_path, metadata, val_path, train, val, split_info)
    settings_text = json.dumps(settings, indent=2, ensure_ascii=False) + "\n"
    # Every file's text is built and every output checked before anything is written,
    # so a refusal leaves nothing half-done.
    texts = [(path, group, metadata_text(group, fmt)) for path, group in ((val_path, val), (out, train))
             if group] if fmt in DIFFSYNTH_FORMATS else []
    try:
        _check_outputs(fmt, dataset_dir, out, settings_path, metadata, val_path)
    except OutputRefused as e:
        raise ExportError(str(e)) from None
    stale = _previous_validation(settings_path, refused)
    extra: dict = {}
    try:
        if fmt in DIFFSYNTH_FORMATS:
            for path, group, text in texts:
                _write_text(path, text, _pandas_check(group) if fmt == "csv" else None)
            _write_text(settings_path, settings_text)
        elif fmt == "musubi":
            write_musubi(dataset_dir, out, train, val)
            _write_text(settings_path, settings_text)
        else:
            extra = write_diffusion_pipe(dataset_dir, out, train, val, settings_text)
    except OutputRefused as e:
        raise ExportError(str(e)) from None
    if stale is not None and stale != (val_path.resolve() if val_path else None):
        # A validation list from an earlier --split must not outlive it: a trainer
        # pointed at it would validate on clips it now trains on.
        stale.unlink(missing_ok=True)
        if fmt == "musubi":
            for f in out.glob("val_*.jsonl"):
                f.unlink()
    return {"format": fmt, "metadata": str(metadata), "validation_metadata": str(val_path) if val_path else None,
            "settings": str(settings_path), "train": len(train), "validation": len(val),
            "resolution_mode": settings["resolution_mode"], "buckets": settings["buckets"],
            "num_frames": settings["num_frames"], **extra, "refused": refused,
            "warnings": _warnings(items, fmt)}


def _check_outputs(fmt: str, dataset_dir: Path, out: Path, settings_path: Path, metadata: Path,
                   val_path: Path | None) -> None:
    """Refuse (``OutputRefused``) before anything is written unless every output is new or ours."""
    if fmt in DIFFSYNTH_FORMATS:
        how = f"its folder's {SETTINGS_NAME} names it"
        for path in (metadata, val_path):
            if path is not None:
                atomic.check_file(path, _named_by_settings, dataset=dataset_dir, what="metadata file", how=how)
        atomic.check_file(settings_path, is_settings, dataset=dataset_dir, what="export settings file",
                          how=f"schema {SCHEMA!r}")
    else:
        atomic.check_dir(out, _export_folder(fmt), dataset=dataset_dir, what=f"{fmt} export", how=_OWNED_HOW)


# An earlier export's validation list is removed only if it has the name and place an
# export gives it: the file an edited settings file names could be anything.
_VAL_NAMES = ("dataset_val.toml", "eval_dataset.toml")
_VAL_SUFFIXES = tuple(f"_val.{f}" for f in DIFFSYNTH_FORMATS)


def _previous_validation(settings_path: Path, refused: list[dict]) -> Path | None:
    """The validation list an earlier export in this place wrote, if it may be removed."""
    if settings_path.is_symlink() or not is_settings(settings_path):
        return None   # not ours: leave everything alone
    value = json.loads(settings_path.read_text(encoding="utf-8")).get("validation_metadata_path")
    if not value:
        return None
    what = f"validation_metadata_path in {settings_path}"
    try:
        path = inside(settings_path.parent, str(value), what)
    except OutsideRoot as e:
        refused.append(refusal(OUTSIDE_ROOT, f"{e}; it was not removed", path=str(value), file=str(settings_path)))
        return None
    lexical = Path(os.path.abspath(settings_path.parent / str(value)))
    if (lexical.parent != Path(os.path.abspath(settings_path.parent)) or lexical.is_symlink()
            or not (lexical.name in _VAL_NAMES or lexical.name.endswith(_VAL_SUFFIXES))):
        refused.append(refusal(atomic.REFUSED, f"{what} names {value!r}, which is not a validation list an "
                               "export writes; it was not removed", path=str(value), file=str(settings_path)))
        return None
    return path


def _warnings(items: list[Item], fmt: str) -> list[str]:
    out = []
    c = items[0].clip
    if c.num_frames % 4 != 1:
        out.append(f"clips have {c.num_frames} frames, not 4n+1: Wan trainers cut them to "
                   f"{(c.num_frames - 1) // 4 * 4 + 1}")
    sizes = {(it.clip.width, it.clip.height) for it in items}
    for w, h in sorted(sizes):
        if w % 16 or h % 16:
            out.append(f"bucket {w}x{h} is not a multiple of 16: trainers will crop it")
        elif fmt == "diffusion-pipe" and (w % 32 or h % 32):
            out.append(f"bucket {w}x{h} is not a multiple of 32: some diffusion-pipe versions round "
                       "aspect-ratio bucket sizes to 32 and would resize it")
    if fmt == "diffusion-pipe" and abs(c.fps - WAN_FPS) > 1e-3:
        out.append(f"clips are {c.fps:g} fps; diffusion-pipe resamples Wan2.1/14B videos to "
                   f"{WAN_FPS:g} fps (Wan2.2-TI2V-5B: 24)")
    return out
