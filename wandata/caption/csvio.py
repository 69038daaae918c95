"""Captions out to a CSV file for spreadsheet editing, and back in.

The file is RFC 4180 CSV in UTF-8 with a byte-order mark, because Excel reads
UTF-8 without one as a legacy code page and garbles every non-ASCII caption.
Values are written and read verbatim (no trimming, no NA guessing), so a caption
comes back exactly as it went out or as the user typed it. Readers other than
``import_csv`` should do the same, e.g. ``pandas.read_csv(f, keep_default_na=False)``.

``export_csv`` writes only where nothing is or over an earlier captions export, known by
its exact header row (``clip_id,caption,captioner,clip,source``), and never onto the
dataset's manifest or clips. Import reads only the ``clip_id`` and ``caption`` columns:
no path in the file is ever opened.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from wandata import atomic
from wandata.dataset.records import KEPT

if TYPE_CHECKING:
    from wandata.dataset.manifest import Manifest

COLUMNS = ["clip_id", "caption", "captioner", "clip", "source"]
MANUAL = "manual"  # the captioner recorded for captions edited by hand


def is_captions_csv(path: Path) -> bool:
    """Whether ``path`` starts with the header ``export_csv`` writes (so it may be replaced)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            first = f.readline()
    except (OSError, UnicodeDecodeError):
        return False
    return first.rstrip("\r\n") == ",".join(COLUMNS)


def export_csv(manifest: Manifest, path: Path) -> int:
    """Write one row per kept clip; returns the number of rows.

    ``atomic.OutputRefused`` (nothing written) if ``path`` holds a file that is not an
    earlier captions export, or is the dataset's manifest or inside its clips.
    """
    path = Path(path)
    atomic.check_file(path, is_captions_csv, dataset=manifest.dir, what="captions CSV",
                      how=f"a captions CSV starts with the header {','.join(COLUMNS)}")
    rows = [[c.clip_id, c.caption, c.captioner, c.path, c.source_path]
            for c in manifest.all_clips() if c.status == KEPT and c.path]
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(COLUMNS)
    w.writerows(rows)
    atomic.write_text(path, buf.getvalue(), encoding="utf-8-sig")
    return len(rows)


@dataclass
class ImportResult:
    changed: list[str] = field(default_factory=list)     # clip ids whose caption changed
    unchanged: int = 0
    unknown: list[str] = field(default_factory=list)     # ids not among the dataset's kept clips

    def to_dict(self) -> dict:
        return self.__dict__.copy()


class CSVImportError(ValueError):
    """The CSV cannot be imported; nothing was changed."""


def import_csv(manifest: Manifest, path: Path, ignore_unknown: bool = False) -> ImportResult:
    """Set captions from the ``clip_id`` and ``caption`` columns and save.

    Rows for clips not in the dataset stop the import (the file may belong to
    another dataset) unless ``ignore_unknown``. Changed captions are recorded as
    made by ``manual``; an emptied cell clears the caption."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            if "clip_id" not in header or "caption" not in header:
                raise CSVImportError(f"{path} needs the columns clip_id and caption (it has: "
                                     f"{', '.join(header) or 'none'}); start from `wandata captions export`")
            rows = [(r["clip_id"], r["caption"]) for r in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise CSVImportError(f"could not read {path} ({type(e).__name__}: {e}); save it as CSV UTF-8") from None
    clips = {c.clip_id: c for c in manifest.all_clips() if c.status == KEPT and c.path}
    res = ImportResult()
    seen: dict[str, int] = {}
    for row_no, (clip_id, caption) in enumerate(rows, start=2):  # spreadsheet row numbers
        if clip_id in seen:
            raise CSVImportError(f"{path}: clip {clip_id} appears in rows {seen[clip_id]} and {row_no} "
                                 "(the header is row 1); keep one row per clip")
        seen[clip_id] = row_no
        if caption is None:
            raise CSVImportError(f"{path}, row {row_no}: the row for {clip_id} has fewer cells than the header")
        if clip_id not in clips:
            res.unknown.append(clip_id)
    if res.unknown and not ignore_unknown:
        shown = ", ".join(res.unknown[:5]) + (" ..." if len(res.unknown) > 5 else "")
        raise CSVImportError(f"{path} has {len(res.unknown)} clip id(s) that are not kept clips of {manifest.dir} "
                           f"({shown}); is it the export of another dataset? Nothing was imported; pass "
                           "--ignore-unknown to import the other rows")
    for clip_id, caption in rows:
        clip = clips.get(clip_id)
        if clip is None:
            continue
        if caption == clip.caption:
            res.unchanged += 1
            continue
        clip.caption, clip.captioner = caption, MANUAL if caption else ""
        res.changed.append(clip_id)
    if res.changed:
        manifest.save()
    return res
