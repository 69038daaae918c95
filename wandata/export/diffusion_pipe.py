"""diffusion-pipe: one clip folder per bucket with same-name ``.txt`` captions and a
``dataset.toml`` naming them, built whole beside the export folder and swapped in; read back
for the lint from the TOML's ``[[directory]]`` entries."""
from __future__ import annotations

import math
import os
import shutil
from collections import Counter
from fractions import Fraction
from pathlib import Path

from wandata import __version__
from wandata import atomic
from wandata.dataset.records import ClipRecord
from wandata.export.common import (MISSING, OWNED_HOW, SETTINGS_NAME, VIDEO_EXTS, WAN_FPS, Exporter, ExportError,
                                   Item, Output, Problem, Row, by_bucket, export_folder, outside, read_toml,
                                   toml_text, under)


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
    return [(root / sub / name, group) for name, group in by_bucket(items).items()]


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
            (tmp / toml_name).write_text(toml_text(header, _dp_config(dirs, bucket)), encoding="utf-8")
        (tmp / SETTINGS_NAME).write_text(settings_text, encoding="utf-8")

    atomic.replace_dir(out_dir, build, export_folder("diffusion-pipe"), dataset=dataset_dir,
                       what="diffusion-pipe export", how=OWNED_HOW)
    return {"frame_bucket": bucket, "linked": dict(methods)}


def read_diffusion_pipe(path: Path, split: str,
                        root: Path | None = None) -> tuple[list[Row], list[Problem], list[str]]:
    """``root``: the folder the clip directories must be in (an export's own folder)."""
    rows, problems, dirs = [], [], []
    for d in read_toml(path).get("directory", []):
        folder = Path(d.get("path", ""))
        if root is not None and not under(root, folder):
            problems.append(outside(str(folder), root, path, "[[directory]] path"))
            continue
        dirs.append(str(folder))
        if not folder.is_dir():
            problems.append(Problem("missing_file", f"directory {folder} does not exist",
                                    "fix [[directory]] path in the dataset TOML", str(path)))
            continue
        for f in sorted(folder.iterdir()):
            if f.is_file() and f.suffix.lower() in VIDEO_EXTS:
                txt = f.with_suffix(".txt")
                prompt = txt.read_text(encoding="utf-8").strip() if txt.exists() else MISSING
                rows.append(Row(f"{folder.name}/{f.name}", str(f), prompt, False, split))
    return rows, problems, dirs


class DiffusionPipe(Exporter):
    """``dataset.toml`` (+ ``eval_dataset.toml``) and linked clip folders in the export folder."""

    name = "diffusion-pipe"

    def conditioning_refusal(self, column: str) -> str:
        # models/wan/wan.py: i2v/flf2v take the first (and last) frame from the clip itself;
        # its control_path (utils/dataset.py) serves image-edit models, not Wan.
        why = ("diffusion-pipe takes Wan I2V/FLF2V frames from the clip itself (models/wan/wan.py)"
               if column in ("input_image", "end_image") else "diffusion-pipe has no Wan control or VACE input")
        return f"{column}: {why}; drop it from --with"

    def paths(self, out: Path, has_val: bool) -> tuple[Path, Path, Path | None]:
        return out / SETTINGS_NAME, out / "dataset.toml", (out / "eval_dataset.toml") if has_val else None

    def write(self, o: Output, settings_text: str, prepared) -> dict:
        return write_diffusion_pipe(o.dataset_dir, o.out, o.train, o.val, settings_text)

    def is_validation_name(self, name: str) -> bool:
        return name == "eval_dataset.toml"

    def bucket_warning(self, width: int, height: int) -> str:
        if width % 32 or height % 32:
            return (f"bucket {width}x{height} is not a multiple of 32: some diffusion-pipe versions round "
                    "aspect-ratio bucket sizes to 32 and would resize it")
        return ""

    def clip_warnings(self, clip: ClipRecord) -> list[str]:
        if abs(clip.fps - WAN_FPS) > 1e-3:
            return [f"clips are {clip.fps:g} fps; diffusion-pipe resamples Wan2.1/14B videos to "
                    f"{WAN_FPS:g} fps (Wan2.2-TI2V-5B: 24)"]
        return []

    def read(self, path: Path, split: str, root: Path | None = None):
        return read_diffusion_pipe(path, split, root)

    def clip_root(self, settings_path: Path, dataset: Path) -> Path:
        # Its clips are links in the export's own folders.
        return settings_path.parent

    def claims(self, toml: dict) -> bool:
        return "directory" in toml
