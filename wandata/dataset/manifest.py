"""The manifest: one Parquet file, one row per source and one per clip.

It is the single source of truth for a dataset directory. It is only ever
replaced whole (written to a temporary file, then renamed), after each source is
finished, so a run killed at any moment leaves the previous complete manifest.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from wandata import atomic
from wandata.atomic import MANIFEST_NAME  # noqa: F401 - importers take it from here
from wandata.dataset.records import FAILED, ClipRecord, SourceRecord
from wandata.profiles import DEFAULT as DEFAULT_PROFILE

_PA_TYPES = {int: pa.int64(), float: pa.float64(), str: pa.string(), bool: pa.bool_(),
             "list[int]": pa.list_(pa.int64()), "list[str]": pa.list_(pa.string()),
             "list[list[float]]": pa.list_(pa.list_(pa.float64()))}


def _schema() -> pa.Schema:
    cols: dict[str, pa.DataType] = {"kind": pa.string()}
    for cls in (SourceRecord, ClipRecord):
        for f in dataclasses.fields(cls):
            t = f.type if isinstance(f.type, str) else f.type.__name__
            t = {"int": int, "float": float, "str": str, "bool": bool}.get(t, t)
            cols.setdefault(f.name, _PA_TYPES[t])
    return pa.schema(list(cols.items()))


SCHEMA = _schema()


class Manifest:
    def __init__(self, dataset_dir: Path):
        self.dir = Path(dataset_dir)
        self.path = self.dir / MANIFEST_NAME
        self.sources: dict[str, SourceRecord] = {}   # by path as given
        self.clips: dict[str, list[ClipRecord]] = {}  # by source path
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        rows = pq.read_table(self.path).to_pylist()
        src_fields = {f.name for f in dataclasses.fields(SourceRecord)}
        clip_fields = {f.name for f in dataclasses.fields(ClipRecord)}
        for r in rows:
            if r["kind"] == "source":
                rec = SourceRecord(**{k: r[k] for k in src_fields if k in r})
                self.sources[rec.path] = rec
                self.clips.setdefault(rec.path, [])
        for r in rows:
            if r["kind"] == "clip":
                rec = ClipRecord(**{k: r[k] for k in clip_fields if k in r})
                self.clips.setdefault(rec.source_path, []).append(rec)

    def done(self, path: str, fingerprint: str, content_hash: str | None = None) -> bool:
        """Finished with these settings, and nothing in it failed: a failure is an accident
        (a failed encode, a full disk, a bug), so a rerun tries again; a drop is a decision
        and stays done."""
        rec = self.sources.get(path)
        return (rec is not None and rec.settings_fingerprint == fingerprint
                and (content_hash is None or rec.content_hash == content_hash)
                and not self.failed(path))

    def failed(self, path: str) -> bool:
        """The source, or one of its clips, failed."""
        rec = self.sources.get(path)
        return rec is not None and (rec.status == FAILED
                                    or any(c.status == FAILED for c in self.clips.get(path, [])))

    def put(self, source: SourceRecord, clips: list[ClipRecord]) -> None:
        self.sources[source.path] = source
        self.clips[source.path] = clips

    def profiles(self, source_paths=None) -> list[str]:
        """The model profiles the sources (all, or those of ``source_paths``) were ingested for,
        from each one's recorded settings; a source recorded before profiles existed reads as
        the default profile, whose clips wandata made then."""
        out = set()
        for path in (self.sources if source_paths is None else source_paths):
            rec = self.sources.get(path)
            if rec is not None:
                try:
                    out.add(json.loads(rec.settings_json or "{}").get("profile") or DEFAULT_PROFILE)
                except ValueError:
                    out.add(DEFAULT_PROFILE)
        return sorted(out)

    def all_clips(self) -> list[ClipRecord]:
        return [c for path in sorted(self.clips) for c in self.clips[path]]

    def rows(self) -> list[dict]:
        out = []
        for path in sorted(self.sources):
            out.append(self.sources[path].row())
            out.extend(c.row() for c in self.clips.get(path, []))
        return out

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist(self.rows(), schema=SCHEMA)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            pq.write_table(table, tmp)
            atomic.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)  # e.g. the disk filled: the previous manifest stands
            raise

    def remove_stale_temporaries(self) -> int:
        """Temporary manifests that a killed run left (a kill between write and rename)."""
        n = 0
        for p in self.dir.glob(f".{self.path.name}.*.tmp"):
            p.unlink(missing_ok=True)
            n += 1
        return n


def read_table(dataset_dir: Path) -> pa.Table:
    return pq.read_table(Path(dataset_dir) / MANIFEST_NAME)
