"""A dataset in a bucket (``wandata ingest SRC -d s3://bucket/ds``): docs/storage.md.

Everything local stays as it is; this file only moves finished files. A source's job
(``process_to_bucket``) runs ``source.process_source`` into a private local folder, uploads each
verified clip to its final key (a clip is only ever uploaded whole: a reader never sees half of
one), removes the keys of its earlier clips that the new rows no longer list, and deletes the
local copies. It returns the same rows a local ingest returns, so the driver, the engine and a
Ray worker on another machine treat it like any other job.

The driver keeps the manifest in a local staging folder (``Mirror``): it downloads the bucket's
manifest files once at the start, and after each source writes them locally as always, then
uploads what changed (whole objects, after that source's clips) and only then deletes the keys
of clips that the new manifest no longer lists. So the bucket's manifest only lists clips that
are there, and it is written last.
"""
from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from wandata import confine, storage
from wandata.atomic import CLIPS_DIR, MANIFEST_NAME
from wandata.dataset.manifest import PARTS_NAME
from wandata.dataset.records import FAILED, KEPT, ClipRecord, SourceRecord
from wandata.ingest.source import clip_dir, process_source
from wandata.settings import Settings

WHAT = "clip path in manifest.parquet"
_PART = re.compile(r"^\d{10}\.parquet$")   # a manifest part (dataset/manifest.py)


def process_to_bucket(path: str, settings: Settings, url: str,
                      on_progress: Callable[[float], None] | None = None
                      ) -> tuple[SourceRecord, list[ClipRecord]]:
    """``process_source`` with the dataset at ``url``: clips made locally, then uploaded."""
    work = Path(tempfile.mkdtemp(prefix="wandata-clips-"))
    try:
        src, clips = process_source(path, settings, work, on_progress)
        for c in clips:
            if c.status == KEPT and c.path:
                try:
                    storage.put_file(work / c.path, storage.inside(url, c.path, WHAT))
                except storage.StorageError as e:
                    c.set(FAILED, storage.CODE, str(e))   # a rerun tries the source again
                    c.path = ""
        if src.source_id:
            _remove_stale(url, clip_dir(work, src).relative_to(work).as_posix(), clips)
        if clips and not any(c.status == KEPT for c in clips) and any(
                c.reason_code == storage.CODE for c in clips):
            src.set(FAILED, storage.CODE, next(c.reason for c in clips if c.reason_code == storage.CODE))
        return src, clips
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _remove_stale(url: str, folder: str, clips: list[ClipRecord]) -> None:
    """Keys in this source's clip folder that its new rows do not list (an earlier run with other
    settings, a window no longer planned): what ``source._remove_stale`` does on disk."""
    planned = {c.path for c in clips if c.path}
    prefix = storage.inside(url, folder, WHAT)
    try:
        present = storage.files(prefix)
    except FileNotFoundError:
        return
    for key in present:
        rel = key[len(url.rstrip("/")) + 1:]
        if rel not in planned:
            storage.remove(key)


class Mirror:
    """The driver's side: a local staging folder holding the manifest files (base and parts,
    ``dataset.manifest``) of the bucket's dataset, uploaded as they change."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.local = Path(tempfile.mkdtemp(prefix="wandata-dataset-"))
        try:
            if storage.get_file(storage.join(self.url, MANIFEST_NAME), self.local / MANIFEST_NAME):
                (self.local / PARTS_NAME).mkdir()
                for key in storage.files(storage.join(self.url, PARTS_NAME)):
                    if _PART.match(storage.name(key)):
                        storage.get_file(key, self.local / PARTS_NAME / storage.name(key))
        except BaseException:
            self.close()
            raise
        self.sent = self._files()

    def _files(self) -> dict[str, tuple[int, int, int]]:
        """The manifest's files here: relative name -> (size, mtime, inode)."""
        out = {}
        for p in [self.local / MANIFEST_NAME, *sorted((self.local / PARTS_NAME).glob("*.parquet"))]:
            if p.is_file() and not p.name.startswith("."):
                st = p.stat()
                out[p.relative_to(self.local).as_posix()] = (st.st_size, st.st_mtime_ns, st.st_ino)
        return out

    @staticmethod
    def listed(clips) -> set[str]:
        return {c.path for c in clips if c.path}

    def saved(self, before: set[str], after: set[str]) -> None:
        """The local manifest was just written: upload what changed in the order the manifest
        wrote it (new parts, then the base, which says which parts it folded in; then delete
        the parts it removed), so a reader of the bucket always finds a whole manifest. Then
        delete the clip keys it stopped listing (confined to the dataset's prefix: a path read
        from the manifest that leads out of it is left alone)."""
        now = self._files()
        changed = [r for r in now if self.sent.get(r) != now[r]]
        for rel in sorted(changed, key=lambda r: (r == MANIFEST_NAME, r)):
            storage.put_file(self.local / rel, storage.join(self.url, rel))
        for rel in sorted(set(self.sent) - set(now)):
            storage.remove(storage.join(self.url, rel))
        self.sent = now
        for rel in sorted(before - after):
            try:
                key = storage.inside(self.url, rel, WHAT)
            except confine.OutsideRoot:
                continue  # never delete outside the dataset; the row is replaced all the same
            if key.startswith(storage.join(self.url, CLIPS_DIR) + "/"):
                storage.remove(key)

    def close(self) -> None:
        shutil.rmtree(self.local, ignore_errors=True)
