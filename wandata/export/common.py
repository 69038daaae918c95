"""What every export format shares: the clips to export, the split, the trainer settings file,
who owns an output, the rows a reader hands the lint, and the ``Exporter`` interface.

A format (``diffsynth.py``, ``musubi.py``, ``diffusion_pipe.py``, or a plugin registered under
the ``wandata.exporters`` entry point group) subclasses ``Exporter``: it writes the curated
clips in its trainer's files and reads such files back for ``wandata check``.
"""
from __future__ import annotations

import json
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import tomli_w

from wandata import __version__
from wandata import atomic, profiles
from wandata.confine import OUTSIDE_ROOT, POSIX_PATHS, OutsideRoot, Within, inside
from wandata.dataset import review
from wandata.dataset.manifest import MANIFEST_NAME, Manifest, clip_records, read_clips
from wandata.dataset.records import KEPT, ClipRecord, bulk

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

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

write_text = atomic.write_text


class ExportError(Exception):
    """What failed; ``items`` lists the clips or rows it failed on."""

    def __init__(self, message: str, items: list[str] | None = None):
        super().__init__(message)
        self.items = list(items or [])


@dataclass(slots=True)
class Item:
    clip: ClipRecord
    video: str    # POSIX path relative to the dataset directory
    prompt: str
    file: Path | None = None   # the clip's file, resolved and checked to lie inside the dataset
    extra: dict = field(default_factory=dict)  # --with: column -> file relative to the dataset


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


# --- the clips -------------------------------------------------------------------------

def collect(dataset_dir: Path, fallback_caption: str | None = None,
            refused: list[dict] | None = None) -> list[Item]:
    """The kept clips of the dataset with their prompts, in manifest order, as reviewed
    (``dataset.review``: a clip rejected in review is not kept, an edited caption wins).

    A clip whose manifest path leads outside the dataset (``../x``, an absolute path, a
    link pointing out) is left out and appended to ``refused``; the others go on.
    """
    with bulk():   # a record, a path and an item per kept clip
        return _collect(Path(dataset_dir), fallback_caption, refused)


def _collect(dataset_dir: Path, fallback_caption: str | None, refused: list[dict] | None) -> list[Item]:
    refused = refused if refused is not None else []
    manifest_path = dataset_dir / MANIFEST_NAME
    if not manifest_path.exists():
        raise ExportError(f"no manifest at {manifest_path}: run `wandata ingest SOURCES -d {dataset_dir}` first, "
                          "or point --dataset at a wandata dataset directory")
    # Read as columns (without the per-frame ones) and filtered there: only the kept clips
    # become records, so a million-clip manifest costs what its kept clips do.
    table = review.reviewed_table(dataset_dir, read_clips(dataset_dir))   # decisions of `wandata review`
    table = table.filter(pc.equal(table.column("status"), KEPT))
    within = Within(dataset_dir)   # the dataset resolved once for every clip path
    files: list[tuple[str, bool | None] | None] = []   # (resolved file, is a file where known)
    ok = []
    for cid, path in zip(table.column("clip_id").to_pylist(), table.column("path").to_pylist()):
        file = None
        if path:
            try:
                file = within.check(path, f"clip path of {cid} in {manifest_path}")
            except OutsideRoot as e:
                refused.append(refusal(OUTSIDE_ROOT, str(e), clip_id=cid, path=path))
                ok.append(False)
                continue
        files.append(file)
        ok.append(True)
    if not files:
        why = f" ({len(refused)} refused: their paths lead outside the dataset)" if refused else ""
        raise ExportError(f"{manifest_path} lists no kept clips{why}, so there is nothing to export",
                          [r["message"] for r in refused])
    kept = clip_records(table.filter(pa.array(ok, pa.bool_())) if refused else table)
    del table, ok
    _refuse_unusable(dataset_dir, manifest_path, kept, files, fallback_caption)
    return [Item(c, _posix(c.path), c.caption if c.caption.strip() else fallback_caption, Path(f[0]))
            for c, f in zip(kept, files)]


def _posix(rel: str) -> str:
    """``Path(rel).as_posix()``, without making a Path where it is ``rel`` itself (no empty or
    ``.`` part to drop, on a POSIX system)."""
    if POSIX_PATHS and rel and not ("//" in rel or "/./" in rel or rel.startswith("./") or rel.endswith(("/", "/."))):
        return rel
    return Path(rel).as_posix()


def _refuse_unusable(dataset_dir: Path, manifest_path: Path, kept: list[ClipRecord],
                     files: list[tuple[str, bool | None] | None], fallback_caption: str | None) -> None:
    """Refuse the export when any kept clip has no caption, no file, or another frame count.
    ``files``: each kept clip's ``Within.check`` (its resolved file, whether that is a file
    where known), None where it has no path."""
    if fallback_caption is not None and not fallback_caption.strip():
        raise ExportError("--fallback-caption is blank; give the text uncaptioned clips should get")
    uncaptioned = [c for c in kept if not c.caption.strip()]
    if uncaptioned and fallback_caption is None:
        raise ExportError(
            f"{len(uncaptioned)} of {len(kept)} kept clips in {dataset_dir} have no caption: caption them, "
            "or pass --fallback-caption TEXT to give them that text",
            [f"{c.path} ({c.clip_id})" for c in uncaptioned])
    missing = [c for c, f in zip(kept, files)
               if not c.path or not (f[1] if f[1] is not None else Path(f[0]).is_file())]
    if missing:
        raise ExportError(
            f"{len(missing)} kept clips listed in {manifest_path} have no file: restore them or re-ingest "
            f"their sources (`wandata check {dataset_dir}` lists every problem)",
            [f"{c.path or '(no path)'} ({c.clip_id})" for c in missing])
    frames = Counter(c.num_frames for c in kept)
    if len(frames) > 1:
        raise ExportError(
            f"kept clips have different frame counts ({dict(frames)}); a training run reads one "
            "num_frames, so re-ingest with a single --frames")


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


def bucket_name(c: ClipRecord) -> str:
    return f"{c.width}x{c.height}"


def by_bucket(items: list[Item]) -> dict[str, list[Item]]:
    out: dict[str, list[Item]] = {}
    for it in items:
        out.setdefault(bucket_name(it.clip), []).append(it)
    return out


def toml_text(comments: list[str], data: dict) -> str:
    """A TOML file with ``comments`` as its header."""
    # A line break inside a path would end the comment and leave the rest as TOML.
    head = "".join("# " + c.replace("\r", " ").replace("\n", " ") + "\n" for c in comments)
    return head + "\n" + tomli_w.dumps(data)


def profile_for(dataset_dir: Path, items: list[Item], requested: str | None = None,
                allow_mismatch: bool = False) -> dict:
    """The trainer settings' ``profile`` entries: the model profile the kept clips were ingested
    for (``ingested_for``, from the manifest) and the one the export is for (``requested``, else
    the recorded one when there is one). Clips that do not fit ``requested`` are refused unless
    ``allow_mismatch`` (then the reason is kept as ``profile_mismatch``)."""
    recorded = Manifest.sources_only(dataset_dir, ["settings_json"]).profiles({it.clip.source_path for it in items})
    out = {"profile": requested or (recorded[0] if len(recorded) == 1 else None), "ingested_for": recorded}
    if requested is not None:
        why = profiles.dataset_refusal(requested, recorded, {it.clip.fps for it in items},
                                       {it.clip.num_frames for it in items},
                                       {(it.clip.width, it.clip.height) for it in items}, f"dataset {dataset_dir}")
        if why and not allow_mismatch:
            raise ExportError(why)
        if why:
            out["profile_mismatch"] = why
    return out


# --- the trainer settings file (wandata_export.json) -------------------------------------

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


def _ours(path: Path) -> dict | None:
    """The settings file's data if it is one of ours (a JSON object with our ``schema``)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("schema") == SCHEMA else None


def is_settings(path: Path) -> bool:
    """Whether ``path`` is an export settings file: a JSON object with our ``schema``."""
    return _ours(path) is not None


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


# --- what is ours ------------------------------------------------------------------------

OWNED_HOW = f"an export folder carries {SETTINGS_NAME} with schema {SCHEMA!r} and its format"


def export_folder(fmt: str):
    """Whether a folder is an earlier export of this format (only that may be replaced)."""
    def owned(folder: Path) -> bool:
        marker = folder / SETTINGS_NAME
        data = None if marker.is_symlink() else _ours(marker)
        return data is not None and data.get("format") == fmt
    return owned


def named_by_settings(path: Path) -> bool:
    """Whether the export settings beside ``path`` name it as their (validation) metadata:
    how a metadata file beside its settings file is known to be ours."""
    data = _ours(path.parent / SETTINGS_NAME)
    return data is not None and path.name in {data.get(k) for k in ("metadata_path", "validation_metadata_path")}


# --- what a reader hands the lint (check.py) ---------------------------------------------

MISSING = object()  # a row with no prompt field at all
# DiffSynth's default_video_operator routes by extension; anything else raises
# "Unsupported file" at the first step that draws it.
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".wmv", ".mkv", ".flv", ".webm")


class CheckError(Exception):
    """The target cannot be checked at all (nothing to read); the message says what to do."""


@dataclass
class Problem:
    code: str
    message: str
    fix: str
    file: str = ""
    where: str = ""          # metadata file and row, when it comes from one
    severity: str = "error"  # "warning" does not fail the check


@dataclass
class Row:
    where: str               # "metadata.csv row 3"
    video: object            # raw cell: str, or None/float/int from a broken file
    prompt: object
    csv: bool = False        # read by pandas.read_csv in DiffSynth
    split: str = "train"
    expect: dict = field(default_factory=dict)  # num_frames/width/height/fps the metadata claims


def under(root: Path, path: Path) -> bool:
    """``path`` (absolute, or relative to the working folder) resolves inside ``root``."""
    real, top = Path(os.path.realpath(path)), Path(os.path.realpath(root))
    return real == top or top in real.parents


def outside(value, root: Path, file: Path | str, where: str = "") -> Problem:
    return Problem(OUTSIDE_ROOT, f"{value!r} leads outside {root}; it was not opened",
                   "fix the entry (a path inside that folder), or re-create the file with wandata",
                   str(file), where)


def read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CheckError(f"cannot read {path}: {e}; fix the TOML file") from None


# --- the interface of a format -----------------------------------------------------------

@dataclass
class Output:
    """Where one export writes, and what."""
    dataset_dir: Path
    out: Path                    # the metadata file, or the format's folder
    settings: Path               # wandata_export.json
    metadata: Path               # what the trainer is pointed at
    validation: Path | None      # the held-out list, with --split
    train: list[Item]
    val: list[Item]


class Exporter:
    """One export format: how it writes the curated clips for its trainer and how it reads
    such files back for ``wandata check``. Formats are found by name (``registry.py``).

    A format writes into a folder of its own by default (``folder``); each hook below has the
    folder behaviour, and a format that writes a file beside its settings overrides them.
    """

    name = ""
    folder = True

    # --- writing
    def default_out(self, dataset_dir: Path) -> Path:
        return Path(dataset_dir) / "export" / self.name

    def output(self, out: Path) -> Path:
        """The output to use for the ``--output`` the user gave (``ExportError`` if it cannot be)."""
        return out

    def paths(self, out: Path, has_val: bool) -> tuple[Path, Path, Path | None]:
        """(settings file, metadata, validation metadata) an export to ``out`` writes."""
        raise NotImplementedError

    def prepare(self, o: Output):
        """Build what ``write`` writes, refusing what cannot be written, before anything is."""
        return None

    def check_outputs(self, o: Output) -> None:
        """Refuse (``OutputRefused``) unless every output is new or an earlier export of this format."""
        atomic.check_dir(o.out, export_folder(self.name), dataset=o.dataset_dir, what=f"{self.name} export",
                         how=OWNED_HOW)

    def write(self, o: Output, settings_text: str, prepared) -> dict:
        """Write everything, the settings file included; returns extra summary fields."""
        raise NotImplementedError

    def is_validation_name(self, name: str) -> bool:
        """Whether ``name`` is the name this format gives a validation list (an earlier one may go)."""
        return False

    def forget_validation(self, out: Path) -> None:
        """Remove what an earlier ``--split`` left beside the validation list."""

    def bucket_warning(self, width: int, height: int) -> str:
        """What this trainer does to a bucket that is a multiple of 16 ('' if nothing)."""
        return ""

    def clip_warnings(self, clip: ClipRecord) -> list[str]:
        return []

    # --- conditioning inputs (``--with``): column -> this trainer's name for it
    conditioning: dict[str, str] = {}

    def conditioning_refusal(self, column: str) -> str:
        """Why this format cannot carry ``column`` ('' if it can)."""
        if column in self.conditioning:
            return ""
        return (f"the {self.name} format has no column for {column}; export it with --format jsonl "
                "(DiffSynth), or drop it from --with")

    # --- reading
    def read(self, path: Path, split: str, root: Path | None = None) -> tuple[list[Row], list[Problem], list[str]]:
        """(rows, problems, files or folders read) of the metadata at ``path``. ``root``: where
        the files it names must be (an export's own folder), None for hand-made metadata."""
        raise NotImplementedError

    def clip_root(self, settings_path: Path, dataset: Path) -> Path:
        """The folder every clip of an export must lie in: the dataset's, unless the format
        puts the clips in its own folder."""
        return dataset

    def claims(self, toml: dict) -> bool:
        """Whether a bare TOML dataset config is this format's."""
        return False
