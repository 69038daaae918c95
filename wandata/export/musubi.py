"""musubi-tuner: a dataset TOML with one ``[[datasets]]`` per bucket, each naming a JSONL of
``video_path``/``caption`` rows, written into the export's folder and read back for the lint."""
from __future__ import annotations

import json
from pathlib import Path

from wandata import __version__
from wandata.export.common import (SETTINGS_NAME, Exporter, Item, Output, Problem, Row, by_bucket, outside,
                                   read_toml, toml_text, under, write_text)
from wandata.export.diffsynth import read_metadata


# musubi-tuner reads a control video per clip (Wan2.1 Fun-Control, `control_path` in the video
# JSONL: docs/dataset_config.md, "Sample for Video Dataset with Control Images"); for I2V it
# takes the first frame from the clip itself when caching latents (wan_cache_latents.py --i2v).
MUSUBI_COLUMNS = {"control_video": "control_path"}
MUSUBI_NO_COLUMN = {
    "input_image": "musubi-tuner takes the I2V first frame from the clip itself (wan_cache_latents.py --i2v)",
    "end_image": "musubi-tuner caches no end frame for Wan (its FLF2V training conditions on the first frame only)",
    "reference_image": "musubi-tuner has no reference image input for Wan Fun-Control",
    "vace_reference_image": "musubi-tuner does not train Wan VACE",
    "vace_video": "musubi-tuner does not train Wan VACE",
}


def musubi_files(dataset_dir: Path, out_dir: Path, items: list[Item], prefix: str = "") -> tuple[dict, dict[str, str]]:
    """(dataset config, {jsonl name: text}) in musubi-tuner's documented format.

    One [[datasets]] per bucket: each has one resolution, which musubi needs because its
    ``resolution`` is a single [width, height]. Paths are absolute: musubi resolves
    relative JSONL paths against the working directory first.
    """
    datasets, files = [], {}
    for name, group in by_bucket(items).items():
        c = group[0].clip
        jsonl = f"{prefix}{name}.jsonl"
        files[jsonl] = "".join(json.dumps({"video_path": str(it.file or (dataset_dir / it.video).resolve()),
                                           "caption": it.prompt,
                                           # --with control_video: musubi's control_path, absolute like the clip
                                           **{MUSUBI_COLUMNS[k]: str((dataset_dir / v).resolve())
                                              for k, v in it.extra.items()}}, ensure_ascii=True) + "\n"
                               for it in group)
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


def write_musubi(dataset_dir: Path, out_dir: Path, train: list[Item], val: list[Item]) -> None:
    for prefix, items, toml_name in (("", train, "dataset.toml"), ("val_", val, "dataset_val.toml")):
        if not items:
            continue
        config, files = musubi_files(dataset_dir, out_dir, items, prefix)
        for name, text in files.items():
            write_text(out_dir / name, text)
        header = [f"musubi-tuner dataset config written by wandata {__version__} from {dataset_dir.resolve()}",
                  f"Cache latents and text encoder outputs with --dataset_config {out_dir.resolve() / toml_name}"]
        write_text(out_dir / toml_name, toml_text(header, config))


def read_musubi(path: Path, split: str, root: Path | None = None) -> tuple[list[Row], list[Problem], list[str]]:
    """``root``: the folder the JSONL files must be in (an export's own folder)."""
    rows, problems, files = [], [], []
    for ds in read_toml(path).get("datasets", []):
        jsonl = ds.get("video_jsonl_file")
        if not jsonl:
            continue
        if root is not None and not under(root, Path(jsonl)):
            problems.append(outside(jsonl, root, path, "video_jsonl_file"))
            continue
        files.append(jsonl)
        r, p = read_metadata(Path(jsonl), split)
        frames = ds.get("target_frames") or []
        res = ds.get("resolution")
        for row in r:
            if frames:
                row.expect.setdefault("num_frames", max(frames))
            if isinstance(res, list) and len(res) == 2:
                row.expect.setdefault("width", res[0])
                row.expect.setdefault("height", res[1])
        rows += r
        problems += p
    return rows, problems, files


class Musubi(Exporter):
    """``dataset.toml`` (+ ``dataset_val.toml``) and one JSONL per bucket in the export folder."""

    name = "musubi"
    conditioning = MUSUBI_COLUMNS

    def conditioning_refusal(self, column: str) -> str:
        if column in self.conditioning:
            return ""
        return f"{column}: {MUSUBI_NO_COLUMN.get(column, 'musubi-tuner has no such input')}; drop it from --with"

    def paths(self, out: Path, has_val: bool) -> tuple[Path, Path, Path | None]:
        return out / SETTINGS_NAME, out / "dataset.toml", (out / "dataset_val.toml") if has_val else None

    def write(self, o: Output, settings_text: str, prepared) -> dict:
        write_musubi(o.dataset_dir, o.out, o.train, o.val)
        write_text(o.settings, settings_text)
        return {}

    def is_validation_name(self, name: str) -> bool:
        return name == "dataset_val.toml"

    def forget_validation(self, out: Path) -> None:
        for f in out.glob("val_*.jsonl"):
            f.unlink()

    def read(self, path: Path, split: str, root: Path | None = None):
        return read_musubi(path, split, root)

    def claims(self, toml: dict) -> bool:
        return "datasets" in toml
