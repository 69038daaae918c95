"""What the review page reads and writes: the manifest's clips as reviewed, filtered, sorted and
paged on the server, and the decisions appended to the journal (``wandata.dataset.review``).

The manifest is read once and again only when its file changes (an ingest rerun); the journal is
re-read whenever its size or time changes, so a second tab or a second server sees every write.
A page of 20,000 clips is a filter and a sort over small dicts: no query touches the disk.
"""
from __future__ import annotations

import os
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path

from wandata.confine import OutsideRoot, inside
from wandata.dataset import reasons, review
from wandata.dataset.manifest import MANIFEST_NAME, Manifest
from wandata.dataset.manifest import signature as manifest_signature
from wandata.dataset.records import FAILED, KEPT, ClipRecord, SourceRecord

SCORES = ("motion", "sharpness", "brightness", "contrast", "text")
STATUSES = ("kept", "rejected", "dropped", "failed")
SORTS = {
    "clip": lambda r: (r["source_name"], r["shot"], r["window"]),
    "source": lambda r: (r["source_name"], r["shot"], r["window"]),
    "status": lambda r: (r["status"], r["source_name"], r["shot"], r["window"]),
    "bucket": lambda r: (r["bucket"], r["source_name"], r["shot"], r["window"]),
    "reason": lambda r: (r["reason_code"], r["source_name"], r["shot"], r["window"]),
    "caption_length": lambda r: (len(r["caption"]), r["clip_id"]),
    "start": lambda r: (r["start"], r["clip_id"]),
    "decided": lambda r: (r["decided_at"], r["clip_id"]),
    **{s: (lambda r, s=s: (r["scores"][s], r["clip_id"])) for s in SCORES},
}
MAX_LIMIT = 500


class ReviewError(ValueError):
    """A request that cannot be done; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400, items: list[str] | None = None):
        super().__init__(message)
        self.status, self.items = status, list(items or [])


def clean_caption(text: str) -> str:
    """A caption as typed, with what breaks CSV files and spreadsheets removed: control
    characters and line breaks become spaces, runs of spaces one. Nothing else is changed:
    markup, quotes and commas are the user's text and every output escapes them."""
    s = "".join(ch if ch.isprintable() else " " for ch in str(text))
    return " ".join(s.split())


@dataclass
class State:
    clips: list[ClipRecord] = field(default_factory=list)
    by_id: dict[str, ClipRecord] = field(default_factory=dict)
    sources: dict[str, SourceRecord] = field(default_factory=dict)      # by source_id
    base: dict[str, dict] = field(default_factory=dict)                 # clip id -> static row
    entries: list[dict] = field(default_factory=list)
    decisions: dict = field(default_factory=dict)
    resolved: dict[str, review.Resolved] = field(default_factory=dict)  # clips with a decision
    bad_lines: list[int] = field(default_factory=list)
    rows: dict[str, dict] = field(default_factory=dict)                 # clip id -> row as listed
    counted: dict | None = None


class Store:
    def __init__(self, dataset: Path, *, max_chars: int = 2000, trigger: str = ""):
        self.dataset = Path(dataset)
        self.max_chars, self.trigger = max_chars, trigger
        self.session = secrets.token_hex(8)
        self._lock = threading.RLock()
        self._mf_sig = self._j_sig = None
        self._s = State()
        if not (self.dataset / MANIFEST_NAME).is_file():
            raise ReviewError(f"no {MANIFEST_NAME} in {self.dataset}; run `wandata ingest SOURCES -d "
                              f"{self.dataset}` first, or pass --dataset")
        self.state()

    # --- reading --------------------------------------------------------------------------

    @staticmethod
    def _sig(path: Path):
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def state(self) -> State:
        """The manifest and the journal as they are on disk now (re-read only what changed)."""
        with self._lock:
            mf = manifest_signature(self.dataset)   # the base file and its parts
            jr = self._sig(review.journal_path(self.dataset))
            if mf != self._mf_sig:
                self._load_manifest()
                self._mf_sig, self._j_sig = mf, None
            if jr != self._j_sig:
                self._load_journal()
                self._j_sig = jr
            return self._s

    def _load_manifest(self) -> None:
        m = Manifest(self.dataset)
        s = State()
        s.clips = m.all_clips()
        s.by_id = {c.clip_id: c for c in s.clips}
        s.sources = {src.source_id: src for src in m.sources.values()}
        for c in s.clips:
            s.base[c.clip_id] = self._base_row(c)
        self._s = s
        s.rows = {c.clip_id: self._row(c.clip_id, s) for c in s.clips}

    def clip_file(self, c: ClipRecord) -> Path | None:
        """The clip's file if it exists inside the dataset (never a path leading out)."""
        if not c.path:
            return None
        try:
            p = inside(self.dataset, c.path, f"clip path of {c.clip_id} in the manifest")
        except OutsideRoot:
            return None
        return p if p.is_file() else None

    def _base_row(self, c: ClipRecord) -> dict:
        return {"clip_id": c.clip_id, "source_id": c.source_id, "source_name": Path(c.source_path).name,
                "shot": c.shot_index, "window": c.window_index, "start": round(c.start_s, 3),
                "end": round(c.end_s, 3), "bucket": c.bucket, "frames": c.num_frames,
                "scores": {k: round(getattr(c, k), 4) for k in SCORES},
                "has_file": self.clip_file(c) is not None, "ingest_status": c.status,
                "ingest_code": c.reason_code}

    def _load_journal(self) -> None:
        s = self._s
        j = review.read(self.dataset)
        s.entries, s.bad_lines = j.entries, j.bad_lines
        old, s.decisions = s.decisions, review.fold(j.entries)
        s.resolved = {cid: review.resolve(s.by_id[cid], d) for cid, d in s.decisions.items() if cid in s.by_id}
        # Only the rows whose decisions changed are built again: a write costs one row, not 20,000.
        for cid in set(old) | set(s.decisions):
            if cid in s.by_id and old.get(cid) != s.decisions.get(cid):
                s.rows[cid] = self._row(cid, s)
        s.counted = None

    def row(self, cid: str, s: State | None = None) -> dict:
        """A clip as the page lists it: its static fields and what the decisions make of it."""
        s = s or self.state()
        return s.rows[cid]

    def _row(self, cid: str, s: State) -> dict:
        c = s.by_id[cid]
        r = s.resolved.get(cid) or review.resolve(c, None)
        d = s.decisions.get(cid, {})
        st = d.get(review.STATUS)
        status = "rejected" if r.rejected else r.status
        return {**s.base[cid], "status": status, "reason_code": r.reason_code,
                "reason_label": reasons.label(r.reason_code) if r.reason_code else "",
                "caption": r.caption, "captioner": r.captioner, "edited": r.edited,
                "reviewed": st is not None and review.STATUS not in r.stale,
                "decision": st.value if st else None, "note": st.note if st else "",
                "stale": r.stale, "overruled": r.overruled,
                "decided_at": max((x.time for x in d.values()), default=""),
                "can_overrule": review.can_overrule(c) and s.base[cid]["has_file"]}

    def counts(self, s: State | None = None) -> dict:
        s = s or self.state()
        if s.counted is None:
            s.counted = self._count(s)
        return dict(s.counted)

    def _count(self, s: State) -> dict:
        n = {"kept": 0, "rejected": 0, "edited": 0, "not_reviewed": 0, "stale": 0, "dropped": 0,
             "failed": 0, "clips": len(s.clips), "sources": len(s.sources), "bad_journal_lines": len(s.bad_lines)}
        for c in s.clips:
            r = s.resolved.get(c.clip_id)
            if r is None:
                n[c.status if c.status in n else "failed"] += 1
                n["not_reviewed"] += c.status == KEPT
                continue
            n["rejected" if r.rejected else (r.status if r.status in n else "failed")] += 1
            n["edited"] += r.edited
            n["stale"] += bool(r.stale)
            decided = review.STATUS in s.decisions.get(c.clip_id, {}) and review.STATUS not in r.stale
            n["not_reviewed"] += c.status == KEPT and not decided
        return n

    def facets(self, s: State | None = None) -> dict:
        s = s or self.state()
        buckets = sorted({c.bucket for c in s.clips if c.bucket})
        codes = sorted({c.reason_code for c in s.clips if c.reason_code} | {reasons.Reason.rejected_in_review.value})
        return {"buckets": buckets,
                "reasons": [{"code": c, "label": reasons.label(c)} for c in codes],
                "sources": sorted(({"id": sid, "name": Path(src.path).name} for sid, src in s.sources.items()),
                                  key=lambda x: x["name"]),
                "scores": list(SCORES), "sorts": list(SORTS), "statuses": list(STATUSES)}

    def query(self, args) -> dict:
        """One page of clips: ``args`` is the request's query (a mapping of strings)."""
        s = self.state()
        known = {"status", "bucket", "reason", "source", "q", "reviewed", "edited", "sort", "order", "offset",
                 "limit"} | {f"min_{k}" for k in SCORES} | {f"max_{k}" for k in SCORES} | {"token"}
        unknown = sorted(set(args) - known)
        if unknown:
            raise ReviewError(f"unknown query parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        statuses = _list(args.get("status"), STATUSES, "status")
        buckets = _list(args.get("bucket"), None, "bucket")
        codes = _list(args.get("reason"), None, "reason")
        srcs = _list(args.get("source"), None, "source")
        q = (args.get("q") or "").casefold()
        reviewed = _yesno(args.get("reviewed"), "reviewed")
        edited = _yesno(args.get("edited"), "edited")
        bounds = [(k, _num(args.get(f"min_{k}"), f"min_{k}"), _num(args.get(f"max_{k}"), f"max_{k}")) for k in SCORES]
        bounds = [b for b in bounds if b[1] is not None or b[2] is not None]
        sort = args.get("sort") or "clip"
        if sort not in SORTS:
            raise ReviewError(f"sort={sort!r} is not one of {', '.join(SORTS)}")
        order = args.get("order") or "asc"
        if order not in ("asc", "desc"):
            raise ReviewError(f"order={order!r} must be asc or desc")
        offset = _int(args.get("offset"), "offset", 0)
        limit = _int(args.get("limit"), "limit", 60)
        if not 1 <= limit <= MAX_LIMIT:
            raise ReviewError(f"limit={limit} must be 1 to {MAX_LIMIT}")
        rows = []
        for c in s.clips:
            if srcs and c.source_id not in srcs or buckets and c.bucket not in buckets:
                continue
            r = self.row(c.clip_id, s)
            if statuses and r["status"] not in statuses or codes and r["reason_code"] not in codes:
                continue
            if q and q not in r["caption"].casefold() and q not in c.clip_id.casefold():
                continue
            if reviewed is not None and r["reviewed"] != reviewed or edited is not None and r["edited"] != edited:
                continue
            if any((lo is not None and r["scores"][k] < lo) or (hi is not None and r["scores"][k] > hi)
                   for k, lo, hi in bounds):
                continue
            rows.append(r)
        rows.sort(key=SORTS[sort], reverse=order == "desc")
        return {"total": len(rows), "offset": offset, "limit": limit, "items": rows[offset:offset + limit],
                "counts": self.counts(s)}

    def detail(self, cid: str) -> dict:
        s = self.state()
        c = s.by_id.get(cid)
        if c is None:
            raise ReviewError(f"no clip {cid!r} in {self.dataset / MANIFEST_NAME}", 404)
        row = self.row(cid, s)
        src = s.sources.get(c.source_id)
        code = reasons.Reason.of(row["reason_code"])
        neighbours = [self.row(x.clip_id, s) for x in s.clips
                      if x.source_id == c.source_id and x.shot_index == c.shot_index]
        history = [{k: e.get(k) for k in ("time", "field", "old", "new", "note", "session", "undo")}
                   for e in s.entries if e["clip_id"] == cid][-20:]
        return {**row, "reason": (s.resolved[cid].reason if cid in s.resolved else c.reason),
                "reason_meaning": code.meaning if code else "", "fix": code.fix if code else "",
                "path": c.path, "source_path": c.source_path,
                "shot_start": round(c.shot_start_s, 3), "shot_end": round(c.shot_end_s, 3),
                "fps": c.fps, "width": c.width, "height": c.height, "flags": c.flags,
                "manifest_caption": c.caption, "manifest_captioner": c.captioner,
                "source": _source_row(src) if src else None,
                "neighbours": [{k: n[k] for k in ("clip_id", "window", "start", "end", "status", "reason_code",
                                                  "reason_label")} for n in neighbours],
                "history": history, "max_chars": self.max_chars, "trigger": self.trigger}

    def sources(self) -> list[dict]:
        s = self.state()
        clips_of: dict[str, list[str]] = {}
        for c in s.clips:
            clips_of.setdefault(c.source_id, []).append(c.status)
        return [{**_source_row(src), "clips": {st: clips_of.get(sid, []).count(st)
                                               for st in sorted(set(clips_of.get(sid, [])))}}
                for sid, src in sorted(s.sources.items(), key=lambda kv: kv[1].path)]

    # --- writing --------------------------------------------------------------------------

    def _clips(self, ids, s: State) -> list[ClipRecord]:
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise ReviewError("ids must be a non-empty list of clip ids")
        missing = [i for i in ids if i not in s.by_id]
        if missing:
            raise ReviewError(f"{len(missing)} clip id(s) are not in {self.dataset / MANIFEST_NAME}", 404,
                              missing[:20])
        return [s.by_id[i] for i in dict.fromkeys(ids)]

    def decide(self, ids, action: str, note: str = "") -> dict:
        """Keep or reject clips (one batch: one undo). Rejecting applies to clips ingest kept;
        keeping, also to a dropped clip whose file exists (kept anyway)."""
        if action not in (review.KEEP, review.REJECT):
            raise ReviewError(f"action {action!r} must be {review.KEEP!r} or {review.REJECT!r}")
        if not isinstance(note, str) or len(note) > 500:
            raise ReviewError("note must be text of at most 500 characters")
        note = clean_caption(note)
        with self._lock:
            s = self.state()
            clips = self._clips(ids, s)
            refused = [c.clip_id for c in clips if c.status != KEPT and not (
                action == review.KEEP and review.can_overrule(c) and s.base[c.clip_id]["has_file"])]
            if refused:
                raise ReviewError(
                    f"{len(refused)} clip(s) cannot be {action} in review: only clips ingest kept can be "
                    "kept or rejected, and a dropped clip can be kept anyway only if its file was written "
                    "(a window dropped before encoding has none: change the setting its reason names and "
                    "ingest again)", 409, refused[:20])
            batch, entries = review.new_batch(), []
            for c in clips:
                cur = s.decisions.get(c.clip_id, {}).get(review.STATUS)
                stale = cur is not None and cur.identity != review.identity(c)
                old = None if cur is None or stale else cur.value
                if old == action and cur.note == note:
                    continue
                entries.append(review.entry(c, review.STATUS, old, action, batch=batch, session=self.session,
                                            note=note))
            review.append(self.dataset, entries)
            return self._done(entries)

    def caption(self, ids, *, text=None, template=None, find=None, replace=None) -> dict:
        """Set captions: ``text`` (one clip or many), ``template`` over each clip's caption
        ({caption}, {trigger}, {source}), or ``find``/``replace`` in each (one batch)."""
        given = [k for k, v in (("text", text), ("template", template), ("find", find)) if v is not None]
        if len(given) != 1:
            raise ReviewError("give exactly one of text, template, or find (with replace)")
        for k, v in (("text", text), ("template", template), ("find", find), ("replace", replace)):
            if v is not None and not isinstance(v, str):
                raise ReviewError(f"{k} must be text")
        if find is not None and (find == "" or replace is None):
            raise ReviewError("find must be non-empty text and come with replace (which may be empty)")
        with self._lock:
            s = self.state()
            clips = self._clips(ids, s)
            nofile = [c.clip_id for c in clips if not s.base[c.clip_id]["has_file"]]
            if nofile:
                raise ReviewError(f"{len(nofile)} clip(s) have no file, so nothing would train on their caption; "
                                  "leave them out of the selection", 409, nofile[:20])
            batch, entries, problems = review.new_batch(), [], []
            for c in clips:
                r = s.resolved.get(c.clip_id) or review.resolve(c, None)
                if text is not None:
                    new = text
                elif template is not None:
                    new = (template.replace("{caption}", r.caption).replace("{trigger}", self.trigger)
                           .replace("{source}", Path(c.source_path).stem))
                else:
                    new = r.caption.replace(find, replace)
                new = clean_caption(new)
                if not new:
                    problems.append(f"{c.clip_id}: the caption would be empty (export refuses clips without one)")
                elif len(new) > self.max_chars:
                    problems.append(f"{c.clip_id}: {len(new)} characters, over the limit of {self.max_chars}")
                if new == r.caption or problems:
                    continue
                cur = s.decisions.get(c.clip_id, {}).get(review.CAPTION)
                old = None if cur is None or cur.identity != review.identity(c) else cur.value
                entries.append(review.entry(c, review.CAPTION, old, new, batch=batch, session=self.session))
            if problems:
                raise ReviewError(f"{len(problems)} caption(s) refused, nothing was changed: {problems[0]}"
                                  + (" (and more, listed)" if len(problems) > 1 else ""), 400, problems[:20])
            review.append(self.dataset, entries)
            return self._done(entries)

    def undo(self) -> dict:
        """Revert the latest action not undone yet (by any tab or session)."""
        with self._lock:
            s = self.state()
            last = review.last_batch(s.entries)
            if not last:
                raise ReviewError("nothing to undo", 409)
            batch, entries = review.new_batch(), []
            for e in last:
                c = s.by_id.get(e["clip_id"])
                if c is None:
                    continue   # the clip left the manifest: nothing of it is shown any more
                entries.append(review.entry(c, e["field"], e["new"], e["old"], batch=batch, session=self.session,
                                            note=(e.get("note") or "") if e["old"] is not None else "",
                                            undo=e["batch"]))
                entries[-1]["identity"] = e["identity"]   # put back exactly what was decided on
            review.append(self.dataset, entries)
            return self._done(entries)

    def _done(self, entries: list[dict]) -> dict:
        s = self.state()
        ids = list(dict.fromkeys(e["clip_id"] for e in entries))
        return {"ok": True, "changed": ids, "entries": len(entries), "items": [self.row(i, s) for i in ids],
                "counts": self.counts(s)}


def _source_row(src: SourceRecord) -> dict:
    return {"source_id": src.source_id, "name": Path(src.path).name, "path": src.path, "status": src.status,
            "reason_code": src.reason_code, "reason_label": reasons.label(src.reason_code) if src.reason_code else "",
            "reason": src.reason, "duration": round(src.duration_s, 3), "fps": round(src.fps, 3),
            "size": f"{src.display_width}x{src.display_height}", "failed": src.status == FAILED}


def _list(value, allowed, name: str) -> set[str]:
    if not value:
        return set()
    items = {v for v in value.split(",") if v}
    if allowed is not None and not items <= set(allowed):
        raise ReviewError(f"{name}={value!r}: each value must be one of {', '.join(allowed)}")
    return items


def _yesno(value, name: str):
    if value in (None, ""):
        return None
    if value not in ("yes", "no"):
        raise ReviewError(f"{name}={value!r} must be yes or no")
    return value == "yes"


def _num(value, name: str):
    if value in (None, ""):
        return None
    try:
        return float(value)
    except ValueError:
        raise ReviewError(f"{name}={value!r} is not a number") from None


def _int(value, name: str, default: int) -> int:
    if value in (None, ""):
        return default
    try:
        n = int(value)
    except ValueError:
        raise ReviewError(f"{name}={value!r} is not a whole number") from None
    if n < 0:
        raise ReviewError(f"{name}={n} must not be negative")
    return n


def source_file(src: SourceRecord, root: Path | None) -> Path | None:
    """The source video the manifest names, if the user named the folder it must lie in
    (``wandata review --sources DIR``), it lies there, and it is still the file that was ingested
    (a regular file of the recorded size); used only to draw frame strips of windows that were
    dropped before encoding. Nothing is written there."""
    if root is None or not src.size_bytes:
        return None
    # The manifest records sources by absolute path (as ingest was given them); links are
    # followed before the check, so one leading out of the folder is as far out as ``..``.
    p = Path(src.path) if os.path.isabs(src.path) else Path(root) / src.path
    try:
        p = p.resolve(strict=True)
    except OSError:
        return None
    if not p.is_relative_to(Path(root).resolve()):
        return None
    try:
        st = os.stat(p)
    except OSError:
        return None
    import stat as _stat
    return p if _stat.S_ISREG(st.st_mode) and st.st_size == src.size_bytes else None
