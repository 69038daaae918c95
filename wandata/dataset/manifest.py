"""The manifest: one logical Parquet table, one row per source and one per clip.

It is the single source of truth for a dataset directory. On disk it is a base file
(``manifest.parquet``) and, beside it, append-only parts (``manifest.parts/NNNNNNNNNN.parquet``).
Each part holds the complete rows (the source row and all its clip rows) of the sources
written since the part before; a later part's rows for a source replace every earlier row of
that source. Read together, latest wins, they are the table. An old dataset has only the base
file and reads unchanged.

Why parts: ingest records each source as it finishes, so a run killed at any moment loses only
unfinished sources. Rewriting the whole file each time costs time proportional to the dataset
per source (quadratic over a run); a part costs what the source's own rows cost.

Every file is written under a temporary name, flushed and renamed (``wandata.atomic``), so a
reader sees a part whole or not at all; temporaries a killed run left are ignored and removed.
The base file's metadata records the highest part number folded into it (``parts_through``):
``compact`` writes the new base first and deletes the folded parts afterwards, so a crash
between the two leaves parts the reader knows to ignore. Small parts are merged into bigger
ones as they pile up (each merge the size of the parts it takes), and the parts are folded
into the base once they hold as many rows as it does, so both the number of files a reader
opens and the bytes written per source stay bounded by the log of the dataset's size.

``save()`` writes the whole table as a new base (callers that edit records in place: captions,
duplicates, scores); ``append(paths)`` writes a part with those sources (ingest's per-source
write). Every file goes through ``_open``/``_listdir``/``_remove``, the one place a storage
layer (object stores) slots in.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import secrets
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from wandata import atomic
from wandata.atomic import MANIFEST_NAME  # noqa: F401 - importers take it from here
from wandata.dataset.records import FAILED, ClipRecord, SourceRecord, bulk
from wandata.profiles import DEFAULT as DEFAULT_PROFILE

PARTS_NAME = "manifest.parts"            # the folder of parts beside the base file
THROUGH_KEY = b"wandata.parts_through"   # base file metadata: the last part folded into it
_PART = re.compile(r"^(\d{10})\.parquet$")
# Folded into the base once the parts hold this share of its rows (at least MIN_FOLD rows):
# the base is rewritten at most once per doubling, so each row is rewritten O(1) times on average.
FOLD_RATIO, MIN_FOLD = 1.0, 5000
# Per-frame columns that no reader of kept clips needs (export, report, check): ``reader()``
# leaves them out, which at a million clips is most of the memory.
HEAVY = ("src_frames", "phash")

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


class ReadOnly(RuntimeError):
    """A manifest read without some columns (``Manifest.reader``) cannot be written back."""


# --- storage: every file operation of the manifest goes through these ----------------------

def _open(path: Path, mode: str = "rb"):
    return open(path, mode)


def _listdir(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return []


def _remove(path: Path) -> None:
    Path(path).unlink(missing_ok=True)


def _exists(path: Path) -> bool:
    return Path(path).exists()


def _read(path: Path, columns: list[str] | None = None) -> pa.Table:
    """The file's table, only ``columns`` of it (those it has) when given."""
    with _open(path, "rb") as f:
        pf = pq.ParquetFile(f)
        have = pf.schema_arrow.names
        return pf.read(columns=None if columns is None else [c for c in columns if c in have])


def _write(table: pa.Table, path: Path) -> None:
    """Write ``table`` at ``path`` whole or not at all (temporary name, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with _open(tmp, "wb") as f:
            pq.write_table(table, f)
        atomic.replace(tmp, path)
    except BaseException:
        _remove(tmp)  # e.g. the disk filled: what was there stands
        raise


def _part_numbers(parts_dir: Path) -> list[int]:
    return sorted(int(m.group(1)) for n in _listdir(parts_dir) if (m := _PART.match(n)))


def _part_path(parts_dir: Path, n: int) -> Path:
    return parts_dir / f"{n:010d}.parquet"


# --- the logical table ---------------------------------------------------------------------

def _key(t: pa.Table) -> pa.Array:
    """Each row's source path: its own path on a source row, ``source_path`` on a clip row."""
    return pc.if_else(pc.equal(t.column("kind"), "source"), t.column("path"), t.column("source_path"))


def _conform(t: pa.Table, columns: list[str] | None) -> pa.Table:
    """``t`` with the manifest's columns (an older file lacks newer ones: nulls, read as defaults)."""
    names = columns if columns is not None else SCHEMA.names
    cols = [t.column(n) if n in t.column_names else pa.nulls(len(t), SCHEMA.field(n).type) for n in names]
    return pa.table(cols, schema=pa.schema([SCHEMA.field(n) for n in names]))


def _latest(tables: list[pa.Table]) -> pa.Table:
    """One table from ``tables`` (oldest first): each source's rows from the last table that has it,
    ordered as ``Manifest.rows`` orders them (by source path, the source row, then its clips)."""
    keep, later = [], None
    for t in reversed(tables):
        if len(t) == 0:
            continue
        key = _key(t)
        mine = pc.unique(key)
        if later is not None:
            t = t.filter(pc.invert(pc.is_in(key, value_set=later)))
            key = _key(t)
        later = mine if later is None else pa.concat_arrays([later, mine]).unique()
        keep.append(t.append_column("__key", key))
    if not keep:
        return _conform(pa.table({"kind": pa.array([], pa.string())}), None).slice(0, 0)
    if len(keep) == 1 and len(tables) == 1:
        return tables[0]   # one file: written in this order already
    t = pa.concat_tables(list(reversed(keep)))
    t = t.append_column("__clip", pc.not_equal(t.column("kind"), "source"))
    t = t.append_column("__n", pa.array(range(len(t)), pa.int64()))
    t = t.take(pc.sort_indices(t, [("__key", "ascending"), ("__clip", "ascending"), ("__n", "ascending")]))
    return t.drop_columns(["__key", "__clip", "__n"])


def read_table(dataset_dir: Path, columns: list[str] | None = None) -> pa.Table:
    """The manifest as one table: the base and its live parts, latest row per source wins."""
    return Manifest._files(Path(dataset_dir), columns)[0]


def signature(dataset_dir: Path):
    """Changes whenever the manifest does (the base file or any part): for readers that cache it."""
    dataset_dir = Path(dataset_dir)
    out = []
    for p in [dataset_dir / MANIFEST_NAME] + [_part_path(dataset_dir / PARTS_NAME, n)
                                               for n in _part_numbers(dataset_dir / PARTS_NAME)]:
        try:
            st = os.stat(p)
        except FileNotFoundError:
            continue
        out.append((p.name, st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out) or None


_REQUIRED = object()   # a field without a default


def _default(f: dataclasses.Field):
    """The field's default: its value, its factory (``list``...), or ``_REQUIRED``."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory
    return _REQUIRED


def _pylist(col) -> list:
    """``col`` as Python values; a column with few distinct values (status, bucket, source path,
    fps...) gives one object per distinct value, shared by its rows: a million rows of "kept"
    are then one string, not a million."""
    out: list = []
    for chunk in (col.chunks if isinstance(col, pa.ChunkedArray) else [col]):
        t = chunk.type
        if (len(chunk) >= 4096 and chunk.null_count == 0
                and (pa.types.is_string(t) or pa.types.is_integer(t) or pa.types.is_floating(t))):
            sample = chunk.slice(0, 4096)
            if pc.count_distinct(sample).as_py() * 4 <= len(sample):
                enc = chunk.dictionary_encode()
                values = np.empty(len(enc.dictionary), dtype=object)
                values[:] = enc.dictionary.to_pylist()
                out += values[enc.indices.to_numpy()].tolist()
                continue
        out += chunk.to_pylist()
    return out


def _column(t: pa.Table, f: dataclasses.Field, cls) -> list:
    """Column ``f`` of ``t`` as Python values, a null as the field's default (as ``cls(**row)``
    without that key gives it)."""
    col = t.column(f.name)
    if col.null_count == 0:
        return _pylist(col)
    d = _default(f)
    if d is _REQUIRED:
        raise TypeError(f"{cls.__name__}: a row of the manifest has no {f.name} (null); the field is required")
    if callable(d):   # a list: a new one per row
        return [d() if v is None else v for v in col.to_pylist()]
    return _pylist(pc.fill_null(col, pa.scalar(d, col.type)))


_CHUNK = 1 << 16   # rows made into records at a time: their Python column lists stay this long


def _records(t: pa.Table, cls, skip=(), kind: str | None = None):
    """One ``cls`` per row of ``t`` (only the rows of that ``kind`` when given): each field from
    its column (a null: the default), a field the table lacks its default, a field in ``skip``
    None. Built column by column (shared values for repeated ones) and passed positionally, a
    slice of rows at a time: at a million rows, a dict per row was most of the time, and the
    column lists of every row at once most of the memory."""
    for start in range(0, len(t), _CHUNK):
        part = t.slice(start, _CHUNK)
        if kind is not None:
            part = part.filter(pc.equal(part.column("kind"), kind))
        yield from _chunk_records(part, cls, skip)


def _chunk_records(t: pa.Table, cls, skip) -> list:
    n = len(t)
    cols = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            cols.append(itertools.repeat(None, n))
        elif f.name in t.column_names:
            cols.append(_column(t, f, cls))
        else:
            d = _default(f)
            if d is _REQUIRED and n:
                raise TypeError(f"{cls.__name__}: the manifest has no {f.name} column; the field is required")
            cols.append(map(lambda _, new=d: new(), range(n)) if callable(d) else itertools.repeat(d, n))
    with bulk():
        return [cls(*row) for row in zip(*cols)]


def read_clips(dataset_dir: Path, columns: list[str] | None = None) -> pa.Table:
    """The clip rows of the manifest as one Arrow table, for readers of many clips (export,
    report): ``columns`` (``ClipRecord`` fields; default every field but the per-frame ones,
    ``HEAVY``), in ``Manifest.all_clips`` order (by source path, then as stored), the base and
    its live parts, latest wins. A null reads as the field's default, as in a record; list
    fields as []. ``clip_records`` turns rows of it into records."""
    fields = {f.name: f for f in dataclasses.fields(ClipRecord)}
    names = list(columns) if columns is not None else [n for n in fields if n not in HEAVY]
    unknown = [n for n in names if n not in fields]
    if unknown:
        raise ValueError(f"not clip fields: {', '.join(unknown)}")
    dataset_dir = Path(dataset_dir)
    t = _base_clips(dataset_dir, list(dict.fromkeys([*names, "source_path"])))
    if t is None:   # parts to merge: the logical table, then its clip rows
        t = Manifest._files(dataset_dir, names)[0]
        t = t.filter(pc.equal(t.column("kind"), "clip"))
    key = t.column("source_path")
    if len(t) > 1 and pc.any(pc.less(key.slice(1), key.slice(0, len(t) - 1))).as_py():
        # Rows of a file another tool wrote, in another order: all_clips groups them by
        # source path (sorted), each source's clips as stored (a stable sort keeps that).
        t = t.take(pc.sort_indices(t, [("source_path", "ascending")]))
    t = t.select(names)
    for i, name in enumerate(names):
        col = t.column(i)
        d = _default(fields[name])
        if col.null_count and d is not _REQUIRED:
            fill = pa.scalar(d() if callable(d) else d, col.type)
            t = t.set_column(i, name, pc.fill_null(col, fill))
    return t


def _base_clips(dataset_dir: Path, names: list[str]) -> pa.Table | None:
    """The clip rows of the base file, ``names`` only, when it is the whole manifest (no live
    part: None otherwise). Read a column at a time, each filtered as it comes: the rows and
    columns not wanted never sit in memory beside the ones kept."""
    base = dataset_dir / MANIFEST_NAME
    if not _exists(base):
        return None
    with _open(base, "rb") as f:
        pf = pq.ParquetFile(f)
        through = int((pf.schema_arrow.metadata or {}).get(THROUGH_KEY, b"0"))
        if any(n > through for n in _part_numbers(dataset_dir / PARTS_NAME)):
            return None
        have = pf.schema_arrow.names
        if "kind" not in have:
            return _conform(pa.table({"kind": pa.array([], pa.string())}), names)
        clip = pc.equal(pf.read(columns=["kind"]).column(0), "clip")
        n = pc.sum(clip).as_py() or 0
        cols = [pf.read(columns=[c]).column(0).filter(clip) if c in have else pa.nulls(n, SCHEMA.field(c).type)
                for c in names]
    return pa.table(cols, schema=pa.schema([SCHEMA.field(c) for c in names]))


def clip_records(t: pa.Table) -> list[ClipRecord]:
    """A ``ClipRecord`` per row of ``t`` (a ``read_clips`` table or a slice of it): the fields it
    holds; the others their defaults, or None for the lists and the required fields it lacks."""
    skip = [f.name for f in dataclasses.fields(ClipRecord)
            if f.name not in t.column_names and (_default(f) is _REQUIRED or callable(_default(f)))]
    return list(_records(t, ClipRecord, skip))


class Manifest:
    def __init__(self, dataset_dir: Path, *, columns: list[str] | None = None, load: bool = True,
                 clips: bool = True):
        self.dir = Path(dataset_dir)
        self.path = self.dir / MANIFEST_NAME
        self.parts_dir = self.dir / PARTS_NAME
        self.sources: dict[str, SourceRecord] = {}   # by path as given
        self.clips: dict[str, list[ClipRecord]] = {}  # by source path
        self.read_only = columns is not None or not clips
        self._parts: list[tuple[int, int]] = []      # live parts: (number, rows)
        self._through = 0
        self._base_rows = 0
        if load and _exists(self.path):
            self._load(columns, clips)

    @classmethod
    def reader(cls, dataset_dir: Path) -> Manifest:
        """The manifest without the per-frame columns (``HEAVY``: source frame indexes, perceptual
        hashes), which those fields read as None; for commands that only read (export, report).
        It refuses ``save``/``append``: writing it back would lose those columns."""
        return cls(dataset_dir, columns=[n for n in SCHEMA.names if n not in HEAVY])

    @classmethod
    def sources_only(cls, dataset_dir: Path, columns: list[str] | None = None) -> Manifest:
        """The source records alone (``clips`` stays empty), read-only: what was ingested and how;
        only the fields ``columns`` (and ``path``) when given, the others their defaults."""
        names = [f.name for f in dataclasses.fields(SourceRecord) if columns is None or f.name in columns]
        return cls(dataset_dir, columns=names, clips=False)

    @staticmethod
    def _files(folder: Path, columns=None):
        """(logical table, parts_through, live parts as (number, rows), base rows)."""
        base_path, parts_dir = folder / MANIFEST_NAME, folder / PARTS_NAME
        if not _exists(base_path):
            return _latest([]), 0, [], 0
        if columns is not None:
            columns = list(dict.fromkeys(["kind", "path", "source_path", *columns]))
        base = _read(base_path, columns)
        through = int((base.schema.metadata or {}).get(THROUGH_KEY, b"0"))
        tables, parts = [_conform(base, columns)], []
        for n in _part_numbers(parts_dir):
            if n <= through:
                continue   # folded into the base by a compaction that was killed before it removed it
            t = _read(_part_path(parts_dir, n), columns)
            tables.append(_conform(t, columns))
            parts.append((n, len(t)))
        return _latest(tables), through, parts, len(base)

    def _load(self, columns, clips: bool = True) -> None:
        table, self._through, self._parts, self._base_rows = self._files(self.dir, columns)
        skip = [n for n in HEAVY if columns is not None and n not in columns]
        for rec in _records(table, SourceRecord, kind="source"):
            self.sources[rec.path] = rec
            self.clips.setdefault(rec.path, [])
        if not clips:
            return
        for rec in _records(table, ClipRecord, skip, kind="clip"):
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

    def rows(self, paths=None) -> list[dict]:
        out = []
        for path in sorted(self.sources if paths is None else paths):
            out.append(self.sources[path].row())
            out.extend(c.row() for c in self.clips.get(path, []))
        return out

    # --- writing ----------------------------------------------------------------------------

    def _writable(self) -> None:
        if self.read_only:
            raise ReadOnly(f"this copy of {self.path} was read without some columns (Manifest.reader); "
                           "open it with Manifest(dataset) to write it")

    def save(self) -> None:
        """Write every source as a new base file (folding and then removing the parts)."""
        self._writable()
        self.dir.mkdir(parents=True, exist_ok=True)
        self._write_base(pa.Table.from_pylist(self.rows(), schema=SCHEMA))

    def _write_base(self, table: pa.Table) -> None:
        through = max([self._through] + [n for n, _ in self._parts] + _part_numbers(self.parts_dir))
        _write(table.replace_schema_metadata({THROUGH_KEY: str(through).encode()}), self.path)
        self._through, self._base_rows = through, len(table)
        for n in _part_numbers(self.parts_dir):
            if n <= through:
                _remove(_part_path(self.parts_dir, n))
        self._parts = []

    def append(self, paths) -> None:
        """Write the rows of the sources ``paths`` (as ``put`` left them) as a new part; the first
        write of a dataset makes the base file. Cost: those sources' rows, plus merges that are
        amortized over the rows written (see the module's docstring)."""
        self._writable()
        paths = sorted(set(paths))
        if not _exists(self.path):
            self.save()
            return
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        n = max([self._through] + [k for k, _ in self._parts] + _part_numbers(self.parts_dir)) + 1
        table = pa.Table.from_pylist(self.rows(paths), schema=SCHEMA)
        _write(table, _part_path(self.parts_dir, n))
        self._parts.append((n, len(table)))
        self._tidy()

    def _tidy(self) -> None:
        in_parts = sum(r for _, r in self._parts)
        if in_parts >= max(MIN_FOLD, FOLD_RATIO * self._base_rows):
            self.compact()
            return
        # Merge the newest parts while the one before is no bigger than twice the sum after it
        # (a binary counter): O(log n) parts, and each row is merged O(log n) times.
        k = len(self._parts) - 1
        total = self._parts[k][1]
        while k > 0 and self._parts[k - 1][1] <= 2 * total:
            k -= 1
            total += self._parts[k][1]
        if len(self._parts) - k >= 2:
            self._merge(k)

    def _merge(self, first: int) -> None:
        """Replace parts[first:] by one part under the last one's number. A crash after the write
        leaves the older parts too; the merged part, later than all of them, wins over each."""
        group = self._parts[first:]
        tables = [_conform(_read(_part_path(self.parts_dir, n)), None) for n, _ in group]
        merged = _latest(tables)
        last = group[-1][0]
        _write(merged, _part_path(self.parts_dir, last))
        for n, _ in group[:-1]:
            _remove(_part_path(self.parts_dir, n))
        self._parts[first:] = [(last, len(merged))]

    def compact(self) -> None:
        """Fold the parts into the base file: the same logical table, in one file. Reads the files
        (not this object's records), so it never writes what another writer did not."""
        self._writable()
        if not _exists(self.path):
            return
        table, through, parts, _ = self._files(self.dir)
        self._through, self._parts = through, parts
        self._write_base(table)

    def remove_stale_temporaries(self) -> int:
        """Temporary files that a killed run left (a kill between write and rename)."""
        n = 0
        for folder, pattern in ((self.dir, re.compile(rf"^\.{re.escape(MANIFEST_NAME)}\..*\.tmp$")),
                                (self.parts_dir, re.compile(r"^\.\d{10}\.parquet\..*\.tmp$"))):
            for name in _listdir(folder):
                if pattern.match(name):
                    _remove(folder / name)
                    n += 1
        return n


def compact(dataset_dir: Path) -> dict:
    """``wandata compact``: fold a dataset's manifest parts into its base file."""
    dataset_dir = Path(dataset_dir)
    if not _exists(dataset_dir / MANIFEST_NAME):
        raise FileNotFoundError(f"no {MANIFEST_NAME} in {dataset_dir}; run `wandata ingest SOURCES -d "
                                f"{dataset_dir}` first, or pass --dataset")
    parts = _part_numbers(dataset_dir / PARTS_NAME)
    m = Manifest(dataset_dir, load=False)   # compact() reads the files as tables, not as records
    removed = m.remove_stale_temporaries()
    m.compact()
    return {"parts_folded": len(parts), "temporaries_removed": removed, "rows": m._base_rows}
