"""Review decisions (``wandata review``): the journal beside the manifest, and the one function
every command reads kept clips through.

A person's decisions live apart from the manifest, in ``DATASET/review.jsonl``: one JSON line
per action, appended, never rewritten. Ingest owns the manifest and replaces it whole; keeping
the decisions in their own file means a rerun of ingest cannot lose them, and the manifest stays
what ingest measured. Each line records the clip id, the clip's content identity when the
decision was taken, the field (``status`` or ``caption``), the previous and the new value, a
note, a timestamp and the server session. Undo appends a line that puts the previous value back
(``undo`` names the batch it reverts). The current state is the fold of the journal: the last
line for a (clip, field) wins.

``apply`` turns manifest records into what the person decided: a clip rejected in review is
``dropped`` with the reason code ``rejected_in_review`` (a drop, like the quality filters; the
status vocabulary stays kept/dropped/failed); a clip kept over a drop is ``kept`` again (only
where its file exists: a window dropped before encoding has nothing to keep); an edited caption
replaces the captioner's. A decision taken on other content (the clip was re-ingested with
other settings, so its decoded pictures differ) is not applied: it is reported as stale.

Appends hold an exclusive ``fcntl`` lock on the journal and are fsynced before ``append``
returns, so two writers never interleave half lines and an answered write survives a crash.
A line a crash cut short (no line end) is skipped when read: it was never answered. Clip ids
and paths in the journal are only compared, never used as paths.
"""
from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from wandata.atomic import fsync_dir
from wandata.dataset.reasons import Reason
from wandata.dataset.records import DROPPED, KEPT, ClipRecord

JOURNAL_NAME = "review.jsonl"
VERSION = 1
STATUS, CAPTION = "status", "caption"
FIELDS = (STATUS, CAPTION)
KEEP, REJECT = "kept", "rejected"
CAPTIONER = "review"            # the captioner name an edited caption carries
_REQUIRED = {"v": int, "id": str, "batch": str, "clip_id": str, "identity": str, "field": str, "time": str}


def identity(clip: ClipRecord) -> str:
    """What a decision is about: the clip's decoded pictures (``decoded_digest``, from verify)
    when it was written; for a window that never was, where it lies in which source."""
    if clip.decoded_digest:
        return "pixels:" + clip.decoded_digest
    return f"window:{clip.source_id}:{clip.start_s:.6f}:{clip.end_s:.6f}:{clip.num_frames}:{clip.bucket}"


def journal_path(dataset_dir) -> Path:
    return Path(dataset_dir) / JOURNAL_NAME


# --- writing --------------------------------------------------------------------------------

def entry(clip: ClipRecord, field_name: str, old, new, *, batch: str, session: str, note: str = "",
          undo: str | None = None) -> dict:
    """One journal line for ``clip``'s ``field_name`` going from ``old`` to ``new`` (None: no decision)."""
    if field_name not in FIELDS:
        raise ValueError(f"unknown review field {field_name!r}; one of {', '.join(FIELDS)}")
    e = {"v": VERSION, "id": secrets.token_hex(8), "batch": batch, "session": session,
         "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "clip_id": clip.clip_id, "identity": identity(clip),
         "field": field_name, "old": old, "new": new, "note": note}
    if undo:
        e["undo"] = undo
    return e


def new_batch() -> str:
    return secrets.token_hex(8)


def append(dataset_dir, entries: list[dict]) -> None:
    """Append ``entries`` as one write under an exclusive lock, and fsync before returning."""
    if not entries:
        return
    path = journal_path(dataset_dir)
    data = "".join(json.dumps(e, ensure_ascii=False, sort_keys=True) + "\n" for e in entries).encode("utf-8")
    created = not path.exists()
    # O_NOFOLLOW: a link planted at the journal's name must not make us write elsewhere.
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data   # a writer killed mid-line: start whole lines after its fragment
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)   # releases the lock
    if created:
        fsync_dir(path.parent)




# --- reading --------------------------------------------------------------------------------

@dataclass
class Journal:
    entries: list[dict] = field(default_factory=list)
    bad_lines: list[int] = field(default_factory=list)   # line numbers that are not a whole entry


def _valid(e) -> bool:
    return (isinstance(e, dict) and all(isinstance(e.get(k), t) for k, t in _REQUIRED.items())
            and e["field"] in FIELDS and all(isinstance(e.get(k), (str, type(None))) for k in ("old", "new"))
            and (e["field"] != STATUS or e.get("new") in (KEEP, REJECT, None)))


def read(dataset_dir) -> Journal:
    """Every whole entry of the journal, in order (an absent journal is an empty one)."""
    path = journal_path(dataset_dir)
    try:
        raw = path.read_bytes() if not path.is_symlink() else b""
    except FileNotFoundError:
        return Journal()
    j = Journal()
    lines = raw.split(b"\n")
    last_whole = len(lines) - 1          # the piece after the last line end was never answered
    for n, line in enumerate(lines[:last_whole], start=1):
        if not line.strip():
            continue
        try:
            e = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            j.bad_lines.append(n)
            continue
        if _valid(e):
            j.entries.append(e)
        else:
            j.bad_lines.append(n)
    return j


@dataclass
class Decision:
    value: str | None     # KEEP/REJECT for status, the text for caption
    identity: str
    note: str = ""
    time: str = ""


def fold(entries: list[dict]) -> dict[str, dict[str, Decision]]:
    """clip id -> field -> the decision in force (the last line for it; a cleared one is absent)."""
    out: dict[str, dict[str, Decision]] = {}
    for e in entries:
        fields = out.setdefault(e["clip_id"], {})
        if e.get("new") is None:
            fields.pop(e["field"], None)
        else:
            fields[e["field"]] = Decision(e["new"], e["identity"], e.get("note") or "", e["time"])
        if not fields:
            out.pop(e["clip_id"])
    return out


def last_batch(entries: list[dict]) -> list[dict]:
    """The entries of the latest action not undone yet (undo goes back one action at a time)."""
    undone = {e["undo"] for e in entries if e.get("undo")}
    for e in reversed(entries):
        if not e.get("undo") and e["batch"] not in undone:
            return [x for x in entries if x["batch"] == e["batch"] and not x.get("undo")]
    return []


# --- applying -------------------------------------------------------------------------------

@dataclass
class Resolved:
    """One clip as reviewed: what ``apply`` makes of it."""
    status: str
    reason_code: str
    reason: str
    caption: str
    captioner: str
    decided: bool = False      # a decision in force applies to it
    edited: bool = False       # its caption is the reviewer's
    rejected: bool = False
    overruled: bool = False    # kept over an ingest drop
    stale: list[str] = field(default_factory=list)   # fields decided on other content


def can_overrule(clip: ClipRecord) -> bool:
    """A drop (not a failure) of a clip whose file was written: only that can be kept anyway."""
    r = Reason.of(clip.reason_code)
    return clip.status == DROPPED and bool(clip.path) and r is not None and not r.is_failure


def resolve(clip: ClipRecord, decisions: dict[str, Decision] | None) -> Resolved:
    r = Resolved(clip.status, clip.reason_code, clip.reason, clip.caption, clip.captioner)
    if not decisions:
        return r
    ident = identity(clip)
    st, cap = decisions.get(STATUS), decisions.get(CAPTION)
    for name, d in ((STATUS, st), (CAPTION, cap)):
        if d is not None and d.identity != ident:
            r.stale.append(name)
    if st is not None and st.identity == ident:
        r.decided = True
        if st.value == REJECT and clip.status == KEPT:
            note = f": {st.note}" if st.note else ""
            r.status, r.reason_code = DROPPED, Reason.rejected_in_review.value
            r.reason = Reason.rejected_in_review.message(note=note)
            r.rejected = True
        elif st.value == KEEP and can_overrule(clip):
            r.status, r.reason_code = KEPT, ""
            r.reason = f"kept in review over {clip.reason_code}" + (f": {st.note}" if st.note else "")
            r.overruled = True
    if cap is not None and cap.identity == ident:
        r.decided = r.edited = True
        if cap.value != clip.caption:
            r.caption, r.captioner = cap.value, CAPTIONER
    return r


@dataclass
class Overlay:
    clips: list[ClipRecord]
    stale: list[dict] = field(default_factory=list)   # {"clip_id", "field"}: decided on other content
    bad_lines: list[int] = field(default_factory=list)


def apply(clips: list[ClipRecord], decisions: dict[str, dict[str, Decision]]) -> Overlay:
    """``clips`` as the decisions make them (records with a decision are copies; the rest as given)."""
    out = Overlay([])
    for c in clips:
        d = decisions.get(c.clip_id)
        if not d:
            out.clips.append(c)
            continue
        r = resolve(c, d)
        out.stale += [{"clip_id": c.clip_id, "field": f} for f in r.stale]
        changed = {k: getattr(r, k) for k in ("status", "reason_code", "reason", "caption", "captioner")
                   if getattr(r, k) != getattr(c, k)}
        out.clips.append(dataclasses.replace(c, **changed) if changed else c)
    return out


def overlay(dataset_dir, clips: list[ClipRecord]) -> Overlay:
    """``apply`` with the dataset's journal: how every command reads the clips."""
    j = read(dataset_dir)
    out = apply(clips, fold(j.entries))
    out.bad_lines = j.bad_lines
    return out


def reviewed(dataset_dir, clips: list[ClipRecord]) -> list[ClipRecord]:
    """The clips with the review's decisions applied."""
    return overlay(dataset_dir, clips).clips


# --- applying to clips held as columns ------------------------------------------------------

# What ``resolve`` reads of a clip: a table given to ``reviewed_table`` must hold these columns.
COLUMNS = ("clip_id", "source_id", "start_s", "end_s", "num_frames", "bucket", "path", "decoded_digest",
           "status", "reason_code", "reason", "caption", "captioner")
_DECIDED = ("status", "reason_code", "reason", "caption", "captioner")   # what a decision changes


def reviewed_table(dataset_dir, table):
    """``reviewed`` for clips held as an Arrow table (``manifest.read_clips``: how export and the
    report read a million clips): the rows with a decision in force go through ``resolve`` as
    records, exactly as in ``apply``; the other rows are returned as they are."""
    import pyarrow as pa
    import pyarrow.compute as pc

    decisions = fold(read(dataset_dir).entries)
    if not decisions or len(table) == 0:
        return table
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"reviewed_table needs the columns {', '.join(missing)}")
    hit = pc.fill_null(pc.is_in(table.column("clip_id"), value_set=pa.array(list(decisions), pa.string())), False)
    hit = hit.combine_chunks() if isinstance(hit, pa.ChunkedArray) else hit
    if not pc.any(hit).as_py():
        return table
    names = {f.name for f in dataclasses.fields(ClipRecord)}
    required = {f.name: None for f in dataclasses.fields(ClipRecord)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    new: dict[str, list] = {k: [] for k in _DECIDED}
    for row in table.select(list(COLUMNS)).filter(hit).to_pylist():
        clip = ClipRecord(**{**required, **{k: v for k, v in row.items() if k in names and v is not None}})
        r = resolve(clip, decisions.get(clip.clip_id))
        for k in _DECIDED:
            new[k].append(getattr(r, k))
    for k in _DECIDED:
        i = table.column_names.index(k)
        col = table.column(i).combine_chunks()
        table = table.set_column(i, k, pc.replace_with_mask(col, hit, pa.array(new[k], col.type)))
    return table
