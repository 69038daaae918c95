"""DiffSynth-Studio metadata: one csv, json or jsonl file with ``video`` and ``prompt`` columns,
written beside its ``wandata_export.json``, and read back the way DiffSynth reads it."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from wandata import atomic
from wandata.controls import COLUMNS
from wandata.export.common import (MISSING, SCHEMA, SETTINGS_NAME, Exporter, ExportError, Item, Output,
                                   Problem, Row, csv_hazard, is_settings, named_by_settings, write_text)

DIFFSYNTH_FORMATS = ("csv", "json", "jsonl")
METADATA_NAMES = tuple(f"metadata.{f}" for f in DIFFSYNTH_FORMATS)


def diffsynth_args(settings: dict) -> list[str]:
    """The DiffSynth train.py arguments that make it read the export as curated."""
    args = ["--dataset_base_path", settings["dataset_base_path"],
            "--dataset_metadata_path", settings["metadata_path"],
            "--data_file_keys", ",".join((settings.get("conditioning") or {}).get("data_file_keys", ["video"])),
            "--num_frames", str(settings["num_frames"])]
    if settings.get("conditioning"):
        args += ["--extra_inputs", ",".join(settings["conditioning"]["extra_inputs"])]
    if settings["resolution_mode"] == "fixed":
        args += ["--height", str(settings["height"]), "--width", str(settings["width"])]
    return args + ["--max_pixels", str(settings["max_pixels"])]


# --- writing -----------------------------------------------------------------------------

def metadata_text(items: list[Item], fmt: str) -> str:
    if fmt == "csv":
        bad = [f"{it.video}: prompt {it.prompt!r}: {why}" for it in items if (why := csv_hazard(it.prompt))]
        if bad:
            raise ExportError(
                f"{len(bad)} prompts cannot go into CSV unchanged: DiffSynth reads CSV with pandas' "
                "default read_csv, which turns them into NaN or numbers and training fails. "
                "Export with --format jsonl (or json) instead: DiffSynth reads those too, and they "
                "carry any text unchanged", bad)
        buf = io.StringIO()
        if not any(it.extra for it in items):
            # The rows DictWriter would write, without a dict per clip (a million of them).
            w = csv.writer(buf, lineterminator="\n")
            w.writerow(["video", "prompt"])
            w.writerows((it.video, it.prompt) for it in items)
            return buf.getvalue()
        rows = _rows(items)
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue()
    # ASCII escapes: DiffSynth opens json/jsonl without an encoding, i.e. in the locale's,
    # and \uXXXX decodes the same in every locale. One object per line, no blank lines:
    # its jsonl reader calls json.loads on every line.
    if fmt == "json":
        return json.dumps(_rows(items), ensure_ascii=True, indent=1) + "\n"
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=True) + "\n" for r in _rows(items))
    raise ExportError(f"unknown metadata format {fmt!r}; choose from {', '.join(DIFFSYNTH_FORMATS)}")


def _rows(items: list[Item]) -> list[dict]:
    # --with columns: paths relative to the dataset, like video (DiffSynth joins them to its base path)
    return [{"video": it.video, "prompt": it.prompt, **it.extra} for it in items]


def _pandas_check(items: list[Item]):
    """Read the written CSV back the way DiffSynth does, when pandas is installed."""
    def check(tmp: Path) -> None:
        try:
            import pandas as pd
        except ImportError:
            return
        df = pd.read_csv(tmp)
        # Column by column: row i as DiffSynth reads it (``df.iloc[i].to_dict()``) holds each
        # column's value i; a pandas row object per clip cost most of a million-clip export.
        n = min(len(df), len(items))

        def column(name):
            return df[name].tolist()[:n] if name in df.columns else [None] * n

        videos, prompts = column("video"), column("prompt")
        extra = {k: column(k) for k in {k for it in items for k in it.extra}}
        bad = [f"{it.video}: wrote {it.prompt!r}, pandas reads {p!r}"
               for i, (it, v, p) in enumerate(zip(items, videos, prompts))
               if p != it.prompt or v != it.video or any(extra[k][i] != want for k, want in it.extra.items())]
        if bad or len(df) != len(items):
            raise ExportError("pandas does not read the CSV back unchanged; use --format jsonl", bad)
    return check


# --- reading -----------------------------------------------------------------------------

def _num(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return int(f) if f.is_integer() else f


def _expect(d: dict) -> dict:
    return {k: n for k in ("num_frames", "width", "height", "fps") if (n := _num(d.get(k))) is not None}


def read_metadata(path: Path, split: str = "train") -> tuple[list[Row], list[Problem]]:
    """Rows of a csv/json/jsonl metadata file. ``video``/``prompt`` columns, or musubi's
    ``video_path``/``caption``. CSV cells are read raw: the NaN question is asked of them."""
    name, rows, problems = path.name, [], []
    try:
        if path.suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, list):
                raise ValueError("the top level is not a list of rows")
        elif path.suffix == ".jsonl":
            data = []
            for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                try:
                    data.append(json.loads(line.strip()))
                except ValueError as e:
                    raise ValueError(f"line {i}: {e} (DiffSynth's reader fails on it, blank lines included)") from None
        else:
            with open(path, newline="", encoding="utf-8-sig") as f:
                data = list(csv.DictReader(f))
    except (OSError, ValueError, UnicodeDecodeError, csv.Error) as e:
        return [], [Problem("unreadable_metadata", f"cannot read {name}: {e}",
                            "fix the file; DiffSynth would fail the same way", str(path))]
    is_csv = path.suffix not in (".json", ".jsonl")
    for i, d in enumerate(data, 1):
        if not isinstance(d, dict):
            problems.append(Problem("bad_row", f"row {i} is not an object",
                                    'make every row a {"video": ..., "prompt": ...} object', str(path), f"{name} row {i}"))
            continue
        vkey = "video" if "video" in d else "video_path"
        pkey = "prompt" if "prompt" in d or "video" in d else "caption"
        rows.append(Row(f"{name} row {i}", d.get(vkey), d.get(pkey, MISSING), is_csv, split, _expect(d)))
    if data and isinstance(data[0], dict) and not ({"video", "video_path"} & set(data[0])):
        problems.append(Problem("missing_column", f"{name} has no 'video' column (columns: {sorted(data[0])})",
                                "name the clip column 'video' (paths relative to the dataset base path)", str(path)))
    return rows, problems


# --- the format ----------------------------------------------------------------------------

class DiffSynth(Exporter):
    """``metadata.FORMAT`` (+ ``metadata_val.FORMAT``) beside ``wandata_export.json``."""

    folder = False
    conditioning = {c: c for c in COLUMNS}   # DiffSynth's own column names

    def default_out(self, dataset_dir: Path) -> Path:
        return Path(dataset_dir) / f"metadata.{self.name}"

    def output(self, out: Path) -> Path:
        if out.is_dir():
            out = out / f"metadata.{self.name}"
        if out.suffix != f".{self.name}":
            # DiffSynth picks its reader by extension: anything but .json/.jsonl is read as CSV.
            raise ExportError(f"--output {out} must end in .{self.name}: DiffSynth chooses its reader by the extension")
        return out

    def paths(self, out: Path, has_val: bool) -> tuple[Path, Path, Path | None]:
        return out.with_name(SETTINGS_NAME), out, out.with_name(f"{out.stem}_val{out.suffix}") if has_val else None

    def prepare(self, o: Output) -> list[tuple[Path, list[Item], str]]:
        return [(path, group, metadata_text(group, self.name))
                for path, group in ((o.validation, o.val), (o.out, o.train)) if group]

    def check_outputs(self, o: Output) -> None:
        how = f"its folder's {SETTINGS_NAME} names it"
        for path in (o.metadata, o.validation):
            if path is not None:
                atomic.check_file(path, named_by_settings, dataset=o.dataset_dir, what="metadata file", how=how)
        atomic.check_file(o.settings, is_settings, dataset=o.dataset_dir, what="export settings file",
                          how=f"schema {SCHEMA!r}")

    def write(self, o: Output, settings_text: str, prepared) -> dict:
        for path, group, text in prepared:
            write_text(path, text, _pandas_check(group) if self.name == "csv" else None)
        write_text(o.settings, settings_text)
        return {}

    def is_validation_name(self, name: str) -> bool:
        return name.endswith(f"_val.{self.name}")

    def read(self, path: Path, split: str, root: Path | None = None):
        # The clips are checked against the export's root by the lint; the file is the one named.
        rows, problems = read_metadata(path, split)
        return rows, problems, [str(path)]


class Csv(DiffSynth):
    name = "csv"


class Json(DiffSynth):
    name = "json"


class Jsonl(DiffSynth):
    name = "jsonl"
