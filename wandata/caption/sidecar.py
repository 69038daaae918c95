"""``sidecar``: captions the user already wrote, in text files or one mapping file.

Most specific wins, so a caption written for one clip overrides the one for its
whole source:
1. a per-clip file: ``<clip>.txt`` next to the clip in the dataset, or
   ``<clip stem>.txt`` / ``<clip id>.txt`` in ``dir``;
2. a per-clip row of the mapping (by clip id, clip path, clip file name or stem);
3. a per-source file: ``<video stem>.txt`` or ``<video name>.txt`` next to the
   source video, or ``<video stem>.txt`` in ``dir``;
4. a per-source row of the mapping (by path, file name or stem).
``.caption`` files are read like ``.txt`` (``ext`` sets the list).

Names built from manifest values (a clip id, a file stem) are looked up only inside
their folder: a clip id such as ``../../x`` never makes a file outside ``dir`` be read.
The clip's own folder is inside the dataset (the caption run refuses other clips), and a
source's caption file is the one beside the source video as the manifest records it.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from wandata.confine import is_inside
from wandata.caption.base import Captioner, CaptionerError, ClipInput, Option, Result

KEY_COLUMNS = ("clip_id", "clip", "source", "source_path", "file", "path", "video", "name")
TEXT_COLUMNS = ("caption", "text", "prompt")


def read_mapping(path: Path) -> dict[str, str]:
    """``{key: caption}`` from a CSV (a key and a caption column) or JSON file
    (an object, or a list of objects with those columns). Relative paths in keys
    are also entered resolved against the mapping file's folder."""
    path = Path(path)
    if not path.is_file():
        raise CaptionerError(f"caption mapping {path} does not exist; pass --opt mapping=FILE.csv|FILE.json")
    try:
        raw = _read_json(path) if path.suffix.lower() == ".json" else _read_csv(path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as e:
        raise CaptionerError(f"could not read caption mapping {path} ({type(e).__name__}: {e})") from None
    out = {}
    for key, text in raw.items():
        out[key] = text
        p = Path(key)
        if not p.is_absolute() and (p.suffix or len(p.parts) > 1):
            out.setdefault(str((path.parent / p).resolve()), text)
    return out


def _read_json(path: Path) -> dict[str, str]:
    data = json.loads(path.read_text(encoding="utf-8-sig"))
    if isinstance(data, dict):
        return {str(k): str(v) for k, v in data.items()}
    if isinstance(data, list):
        return dict(_pick_columns(row, path) for row in data)
    raise CaptionerError(f"caption mapping {path} must hold an object {{source: caption}} or a list of rows")


def _read_csv(path: Path) -> dict[str, str]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    if not rows:
        return {}
    header = [h.strip().lower() for h in rows[0]]
    if any(h in KEY_COLUMNS for h in header) and any(h in TEXT_COLUMNS for h in header):
        return dict(_pick_columns(dict(zip(header, r)), path) for r in rows[1:] if any(r))
    # No recognised header: two columns, key then caption.
    return {r[0]: r[1] for r in rows if len(r) >= 2 and r[0]}


def _pick_columns(row: dict, path: Path) -> tuple[str, str]:
    row = {str(k).lower(): v for k, v in row.items()}
    key = next((row[c] for c in KEY_COLUMNS if row.get(c)), None)
    text = next((row[c] for c in TEXT_COLUMNS if c in row), None)
    if key is None or text is None:
        raise CaptionerError(f"caption mapping {path}: a row has no key column ({', '.join(KEY_COLUMNS)}) "
                             f"or no caption column ({', '.join(TEXT_COLUMNS)}): {row}")
    return str(key), str(text)


class SidecarCaptioner(Captioner):
    name = "sidecar"
    batch_size = 64
    options = {
        "mapping": Option("", "CSV or JSON file mapping source (or clip) to caption"),
        "dir": Option("", "extra folder holding <video stem>.txt or <clip stem>.txt files"),
        "ext": Option(".txt,.caption", "caption file extensions, comma-separated, in order of preference"),
    }

    def __init__(self, **opts):
        super().__init__(**opts)
        self.exts = [e if e.startswith(".") else f".{e}" for e in self.opts["ext"].split(",") if e.strip()]
        self.dir = Path(self.opts["dir"]).expanduser() if self.opts["dir"] else None
        if self.dir and not self.dir.is_dir():
            raise CaptionerError(f"sidecar dir {self.dir} is not a folder")
        self.mapping = read_mapping(Path(self.opts["mapping"]).expanduser()) if self.opts["mapping"] else {}

    def caption_batch(self, items: list[ClipInput]) -> list[Result]:
        return [self._one(item) for item in items]

    def _one(self, item: ClipInput) -> Result:
        r = item.record
        clip, src = item.path, Path(r.source_path)
        clip_files = self._files(clip.parent, [clip.stem]) + self._files(self.dir, [clip.stem, r.clip_id])
        src_files = self._files(src.parent, [src.stem, src.name]) + self._files(self.dir, [src.stem])
        clip_keys = [r.clip_id, r.path, clip.name, clip.stem]
        src_keys = [r.source_path, str(src.resolve()), src.name, src.stem]
        for found in (self._first_file(clip_files), self._first_key(clip_keys),
                      self._first_file(src_files), self._first_key(src_keys)):
            if found is not None:
                return found
        looked = [str(p) for p in clip_files + src_files]
        if self.mapping:
            looked.append(f"{self.opts['mapping']} (keys {', '.join(repr(k) for k in clip_keys[:1] + src_keys[2:])})")
        return Result(error=f"no caption found for {r.clip_id} (source {src.name}); looked for "
                            f"{'; '.join(looked)}. Write one of these files or add the source to a mapping")

    def _files(self, folder: Path | None, stems: list[str]) -> list[Path]:
        if not folder:
            return []
        return [folder / f"{s}{e}" for s in stems for e in self.exts if is_inside(folder, f"{s}{e}")]

    def _first_file(self, paths: list[Path]) -> Result | None:
        for p in paths:
            if p.is_file():
                text = p.read_text(encoding="utf-8-sig", errors="replace")
                return Result(text=text) if text.strip() else Result(error=f"caption file {p} is empty")
        return None

    def _first_key(self, keys: list[str]) -> Result | None:
        for k in keys:
            if k in self.mapping:
                return Result(text=self.mapping[k])
        return None
