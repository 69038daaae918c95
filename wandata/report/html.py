"""``wandata report``: HTML pages showing what a dataset will train on.

Totals, histograms of shot lengths and scores, and a contact sheet of every kept clip (a strip
of three frames, caption, scores, bucket), then the dropped ones grouped by reason. ``write``
makes the paged report: the index page (``report.html``: totals, charts, the first page of kept
clips, the dropped groups with their counts, links to every page) and beside it a folder
``report_files/`` holding the other pages (``PER_PAGE`` clips each, linked to each other and to
the index) and the thumbnails as JPEG files. The pages need no network and no server: they open
from ``file://``. ``build`` makes the one self-contained page with inline thumbnails (for a
small dataset, to mail). Every string that comes from a file name, a caption or a reason is
escaped: captions are free text and file names can hold anything, including markup.

Thumbnails are named by a hash of the clip's content identity (its decoded pictures' digest,
else its file's path, size and time), never by a string from the manifest; a rerun reuses the
ones already made and removes those no clip uses any more. The pages of one run go to a new
folder and the index is written last, so a killed run leaves the previous report whole.

The index is written only where nothing is, or over an earlier report: one that carries the
``<meta name="generator" content="wandata report">`` tag (or, from before the tag, starts
as this module's pages always did); its folder only if it is new, empty or carries our
marker. A clip whose manifest path leads outside the dataset gets no thumbnails
(``path_outside_root`` on its card): nothing outside is read.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
import os
import secrets
import shutil
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import av
import cv2
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from wandata import atomic
from wandata.confine import OUTSIDE_ROOT, OutsideRoot, Within
from wandata.dataset import reasons, review
from wandata.dataset.manifest import Manifest, clip_records, read_clips
from wandata.dataset.records import KEPT, ClipRecord, SourceRecord

GENERATOR = '<meta name="generator" content="wandata report">'
# How every page began before the generator tag: such a page is ours too.
LEGACY_START = '<!doctype html><html><head><meta charset="utf-8"><title>wandata report</title>'

THUMB_W = 160
PER_PAGE = 200          # kept clips on one page
ROWS_PER_PAGE = 1000    # rows of the not-kept tables on one page
MARKER = "wandata-report.json"   # in the report's folder: how ours is known
THUMBS = "thumbs"
SCORES = (("motion", "motion (% width/s)"), ("sharpness", "sharpness"),
          ("brightness", "brightness"), ("contrast", "contrast"), ("text", "text area"))
CSS = """
body{font:14px system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:22px}h2{font-size:18px;margin-top:32px}
.totals span{display:inline-block;margin-right:18px}
.sheet{display:flex;flex-wrap:wrap;gap:12px}
.clip{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px;width:500px}
.clip img{height:90px;margin-right:2px}
.pages a,.pages b{display:inline-block;margin:0 6px 4px 0}
.clip .meta{color:#555;font-size:12px;margin-top:4px;word-break:break-all}
.clip .caption{margin-top:4px}
.flag{color:#a60}
.charts{display:flex;flex-wrap:wrap;gap:16px}
.charts figure{margin:0;background:#fff;border:1px solid #ddd;padding:6px}
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #ddd;padding:3px 6px;text-align:left;font-size:12px}
"""


def e(value) -> str:
    return html.escape(str(value), quote=True)


def _frames(path: Path, count: int):
    """``count`` frames spread over a clip (BGR arrays); [] if it cannot be read."""
    try:
        with av.open(str(path)) as c:
            frames = list(c.decode(video=0))   # kept as decoded pictures: only the picks are converted
            picks = ([frames[round(i * (len(frames) - 1) / max(count - 1, 1))] for i in range(count)]
                     if frames else [])
            return [f.to_ndarray(format="bgr24") for f in picks]
    except (av.error.FFmpegError, OSError):
        return []


def _small(img):
    h = round(img.shape[0] * THUMB_W / img.shape[1])
    return cv2.resize(img, (THUMB_W, h), interpolation=cv2.INTER_AREA)


def _jpeg(img) -> bytes | None:
    ok, jpg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return jpg.tobytes() if ok else None


def thumbnails(path: Path, count: int = 3) -> list[str]:
    """``count`` frames spread over a clip as JPEG data URIs."""
    out = []
    for img in _frames(path, count):
        jpg = _jpeg(_small(img))
        if jpg:
            out.append("data:image/jpeg;base64," + base64.b64encode(jpg).decode())
    return out


def strip(path: Path, count: int = 3) -> bytes | None:
    """``count`` frames spread over a clip, side by side in one JPEG (None if it cannot be read)."""
    imgs = [_small(img) for img in _frames(path, count)]
    if not imgs:
        return None
    h = min(i.shape[0] for i in imgs)
    return _jpeg(np.hstack([i[:h] for i in imgs]))


def histogram(title: str, values: list[float], bins: int = 20, w: int = 260, h: int = 110) -> str:
    """A bar chart as inline SVG."""
    if not values:
        return ""
    counts, edges = np.histogram(values, bins=bins)
    top = max(int(counts.max()), 1)
    bw = w / bins
    bars = "".join(
        f'<rect x="{i * bw:.1f}" y="{h - 20 - (n / top) * (h - 30):.1f}" width="{bw - 1:.1f}" '
        f'height="{(n / top) * (h - 30):.1f}" fill="#4a7"><title>{edges[i]:.3g}-{edges[i + 1]:.3g}: {n}</title></rect>'
        for i, n in enumerate(counts))
    axis = (f'<text x="0" y="{h - 4}" font-size="10">{edges[0]:.3g}</text>'
            f'<text x="{w}" y="{h - 4}" font-size="10" text-anchor="end">{edges[-1]:.3g}</text>')
    return (f'<figure><figcaption>{e(title)} (n={len(values)})</figcaption>'
            f'<svg width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg">{bars}{axis}</svg></figure>')


def _why(c: ClipRecord) -> str:
    """The heading a row not kept is grouped under: its reason code's label. Rows of a manifest
    from before reason codes have none; their own reasons are listed in the table."""
    return _label(c.reason_code)


def _label(code: str) -> str:
    return reasons.label(code) if code else "no reason code (an older manifest)"


def _inline(within: Within):
    def images(dataset: Path, c: ClipRecord) -> str:
        return "".join(f'<img src="{src}" alt="">'
                       for src in thumbnails(within(c.path, "clip path in the manifest")))
    return images


def _card(dataset: Path, c: ClipRecord, images) -> str:
    """One kept clip. ``images(dataset, clip)`` gives its ``<img>`` markup; it raises OutsideRoot
    for a path leading out of the dataset (then nothing is read)."""
    flags = "".join(f'<div class="flag">{e(f)}</div>' for f in c.flags)
    try:
        imgs = images(dataset, c)
    except OutsideRoot as why:
        imgs = ""
        flags += f'<div class="flag">{OUTSIDE_ROOT}: {e(why)}</div>'
    scores = " · ".join(f"{label} {getattr(c, key):g}" for key, label in SCORES if getattr(c, key) >= 0)
    caption = e(c.caption) if c.caption else "<i>no caption</i>"
    return (f'<div class="clip"><div>{imgs}</div><div class="caption">{caption}</div>'
            f'<div class="meta">{e(c.bucket)} · {c.num_frames} frames · {e(c.path)}<br>{e(scores)}</div>'
            f'{flags}</div>')


def _page(title: str, body: str) -> str:
    return (f"{LEGACY_START}{GENERATOR}<title>{e(title)}</title>"
            f"<style>{CSS}</style></head><body>{body}</body></html>")


# What the pages show of a clip, and what the review's decisions read: the columns read.
COLUMNS = tuple(dict.fromkeys((*review.COLUMNS, "source_path", "shot_index", "window_index", "flags",
                               *(key for key, _ in SCORES))))
SOURCE_COLUMNS = ("path", "status", "reason", "reason_code", "shots")


@dataclass
class _Clips:
    """A dataset as the report reads it: its sources, and its clips as columns, as reviewed, in
    manifest order; records are made only for the clips of the page being written."""
    sources: list[SourceRecord]
    clips: pa.Table
    kept: np.ndarray      # row numbers of the kept clips, in order
    dropped: np.ndarray   # of the others

    def records(self, rows) -> list[ClipRecord]:
        return clip_records(self.clips.take(pa.array(rows, pa.int64())))

    def column(self, name: str, rows) -> pa.Array:
        return self.clips.column(name).take(pa.array(rows, pa.int64()))


def _read(dataset: Path) -> _Clips:
    sources = list(Manifest.sources_only(dataset, list(SOURCE_COLUMNS)).sources.values())
    clips = review.reviewed_table(dataset, read_clips(dataset, list(COLUMNS)))  # decisions of `wandata review`
    kept = pc.equal(clips.column("status"), KEPT).to_numpy(zero_copy_only=False)
    return _Clips(sources, clips, np.flatnonzero(kept), np.flatnonzero(~kept))


def build(dataset: Path) -> str:
    """The whole report as one self-contained page, thumbnails inline (``write`` pages it)."""
    dataset = Path(dataset)
    d = _read(dataset)
    images = _inline(Within(dataset))
    parts = [f"<h1>wandata dataset: {e(dataset.resolve())}</h1>", _totals(d), _charts(d),
             f'<h2>Kept clips ({len(d.kept)})</h2><div class="sheet" id="kept">',
             *(_card(dataset, c, images) for c in d.records(d.kept)), "</div>",
             _not_kept(d.records(d.dropped))]
    return (f"{LEGACY_START}{GENERATOR}"
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>")


def _counts(col) -> dict:
    return {v["values"]: v["counts"] for v in pc.value_counts(col).to_pylist()}


def _totals(d: _Clips) -> str:
    """Counted as ``dataset.totals.count`` counts (the plan and the ingest summary): sources and
    clips by status, kept clips by bucket, seconds kept."""
    counted = (("sources", dict(Counter(s.status for s in d.sources))), ("clips", _counts(d.clips.column("status"))),
               ("buckets", _counts(d.column("bucket", d.kept))))
    # Summed one by one in manifest order, as count() sums records: the same float.
    kept_s = np.subtract(d.clips.column("end_s").to_numpy()[d.kept], d.clips.column("start_s").to_numpy()[d.kept])
    seconds = round(sum(kept_s.tolist()), 2)
    spans = [f"<span><b>{name}</b>: {e(', '.join(f'{v} {k}' for k, v in sorted(counter.items())) or 'none')}</span>"
             for name, counter in counted]
    return f'<div class="totals">{"".join(spans)}<span><b>kept</b>: {seconds:.1f} s</span></div>'


def _charts(d: _Clips) -> str:
    shot_lengths = [b - a for s in d.sources for a, b in s.shots]
    scored = d.clips.column("sharpness").to_numpy() >= 0
    charts = [histogram("shot length (s)", shot_lengths)]
    for key, label in SCORES:
        values = d.clips.column(key).to_numpy()[scored]
        charts.append(histogram(label, values[values >= 0].tolist()))
    return f'<h2>Distributions</h2><div class="charts">{"".join(charts)}</div>'


def _groups(clips: list[ClipRecord]) -> list[tuple[tuple[str, str], list[ClipRecord]]]:
    """Dropped and failed clips by status and reason, the largest group first."""
    groups = defaultdict(list)
    for c in clips:
        groups[(c.status, _why(c))].append(c)
    return sorted(groups.items(), key=lambda kv: -len(kv[1]))


def _group_order(d: _Clips) -> tuple[np.ndarray, list[tuple[str, str]], dict[tuple[str, str], int]]:
    """``_groups`` for clips held as columns: (the clips not kept in group order, as row numbers,
    each one's group, the groups' sizes in their order)."""
    labels: dict[tuple[str, str], tuple[str, str]] = {}
    keys, first = [], {}
    for status, code in zip(d.column("status", d.dropped).to_pylist(), d.column("reason_code", d.dropped).to_pylist()):
        key = labels.get((status, code))
        if key is None:
            key = labels[(status, code)] = (status, _label(code))
        first.setdefault(key, len(first))
        keys.append(key)
    group = np.fromiter((first[k] for k in keys), dtype=np.int64, count=len(keys))
    sizes = np.bincount(group, minlength=len(first))
    ranked = sorted(first, key=lambda k: -sizes[first[k]])          # stable: first met first among equals
    rank = np.empty(len(first), dtype=np.int64)
    rank[[first[k] for k in ranked]] = np.arange(len(first))
    order = np.argsort(rank[group], kind="stable")
    return d.dropped[order], [keys[i] for i in order.tolist()], {k: int(sizes[first[k]]) for k in ranked}


@functools.lru_cache(maxsize=1 << 16)
def _name(path: str) -> str:
    """``Path(path).name``, once per source (a million dropped rows come from far fewer)."""
    return Path(path).name


def _table(status: str, why: str, heading_n, group: list[ClipRecord]) -> str:
    rows = "".join(f"<tr><td>{e(_name(c.source_path))}</td><td>{c.shot_index}</td>"
                   f"<td>{c.window_index}</td><td>{e(c.reason)}</td></tr>" for c in group)
    return (f'<h3>{e(status)}: {e(why)} ({heading_n})</h3><table class="dropped">'
            f"<tr><th>source</th><th>shot</th><th>window</th><th>reason</th></tr>{rows}</table>")


def _not_kept(clips: list[ClipRecord]) -> str:
    """Dropped and failed clips in one table per status and reason, the largest group first."""
    parts = [f"<h2>Not kept ({len(clips)})</h2>"]
    for (status, why), group in _groups(clips):
        parts.append(_table(status, why, len(group), group))
    return "".join(parts)


def is_report(path: Path) -> bool:
    """Whether ``path`` is a page this module wrote (so it may be replaced)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096).decode("utf-8", errors="replace")
    except OSError:
        return False
    return GENERATOR in head or head.startswith(LEGACY_START)


def files_dir(out: Path) -> Path:
    """The folder of a report's other pages and thumbnails: beside the index, named after it."""
    return Path(out).with_name(Path(out).stem + "_files")


def is_report_dir(folder: Path) -> bool:
    marker = Path(folder) / MARKER
    try:
        return not marker.is_symlink() and json.loads(marker.read_text(encoding="utf-8")).get("generator") == \
            "wandata report"
    except (OSError, ValueError, AttributeError):
        return False


def _thumb_key(dataset: Path, c: ClipRecord, file: Path | str) -> str:
    """A name for the clip's strip from what it shows: never a string of the manifest in a path."""
    if c.decoded_digest:
        what = "pixels:" + c.decoded_digest
    else:
        try:
            st = os.stat(file)
        except OSError:
            return ""
        what = f"file:{file}:{st.st_size}:{st.st_mtime_ns}"
    return hashlib.blake2b(f"{THUMB_W}:3:{what}".encode(), digest_size=16).hexdigest()


class _Thumbs:
    """Thumbnail strips as files under ``folder/thumbs``, made once per picture and reused."""

    def __init__(self, folder: Path, within: Within):
        self.dir = folder / THUMBS
        self.within = within   # the dataset, resolved once for every clip's path
        self.have = {n for sub in _listdir(self.dir) for n in _listdir(self.dir / sub)}
        self.used: set[str] = set()
        self.made = 0

    def __call__(self, prefix: str):
        def images(dataset: Path, c: ClipRecord) -> str:
            file = self.within.text(c.path, "clip path in the manifest")
            key = _thumb_key(dataset, c, file)
            if not key:
                return ""
            name = key + ".jpg"
            if name not in self.have:
                data = strip(Path(file))
                if data is None:
                    return ""
                atomic.write_bytes(self.dir / key[:2] / name, data)
                self.have.add(name)
                self.made += 1
            self.used.add(name)
            return f'<img src="{prefix}{THUMBS}/{key[:2]}/{name}" alt="" loading="lazy">'
        return images

    def prune(self) -> int:
        """Remove the strips no clip of this report shows (clips gone or re-ingested)."""
        n = 0
        for sub in _listdir(self.dir):
            for name in _listdir(self.dir / sub):
                if name not in self.used:
                    (self.dir / sub / name).unlink(missing_ok=True)
                    n += 1
        return n


def _listdir(folder: Path) -> list[str]:
    try:
        return sorted(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _nav(links: list[tuple[str, str]], current: int) -> str:
    """Page links; ``links``: (label, href) per page, ``current`` the index of this one."""
    return '<div class="pages">' + "".join(
        f"<b>{e(label)}</b>" if i == current else f'<a href="{e(href)}">{e(label)}</a>'
        for i, (label, href) in enumerate(links)) + "</div>"


def write(dataset: Path, out: Path | None = None, per_page: int = PER_PAGE,
          rows_per_page: int = ROWS_PER_PAGE) -> Path:
    """Write the paged report (the index at ``out``, default DATASET/report.html, the rest in
    ``files_dir(out)``); ``atomic.OutputRefused`` (nothing written) if either holds what is not ours."""
    dataset = Path(dataset)
    out = Path(out) if out else dataset / "report.html"
    folder = files_dir(out)
    how = f"a report carries {GENERATOR}"
    how_dir = f"a report folder carries {MARKER}"

    def check():
        atomic.check_file(out, is_report, dataset=dataset, what="report", how=how)
        atomic.check_dir(folder, is_report_dir, dataset=dataset, what="report folder", how=how_dir)
    check()
    if per_page < 1 or rows_per_page < 1:
        raise ValueError(f"per_page and rows_per_page must be at least 1, not {per_page}, {rows_per_page}")
    d = _read(dataset)
    n_kept, n_dropped = len(d.kept), len(d.dropped)
    summary = _totals(d) + _charts(d)

    folder.mkdir(parents=True, exist_ok=True)
    atomic.write_text(folder / MARKER, json.dumps({"generator": "wandata report", "index": out.name}) + "\n")
    run = f"pages-{secrets.token_hex(4)}"   # this run's pages; the index names them, written last
    pages = folder / run
    pages.mkdir()
    thumbs = _Thumbs(folder, Within(dataset))
    # Names from the user's --output go into links percent-encoded (then escaped as any text).
    index_href, folder_href = f"../../{quote(out.name)}", quote(folder.name)
    n_kept_pages = max(1, -(-n_kept // per_page))
    kept_links = [(str(i + 1), index_href if i == 0 else f"kept-{i + 1:06d}.html") for i in range(n_kept_pages)]
    from_index = [(label, href if i else "#kept") for i, (label, href) in enumerate(kept_links)]
    from_index = [(label, f"{folder_href}/{run}/{href}" if i else href) for i, (label, href) in enumerate(from_index)]
    title = f"wandata dataset: {dataset.resolve()}"
    for i in range(1, n_kept_pages):
        # Records for this page's clips only: memory stays that of one page.
        chunk = d.records(d.kept[i * per_page:(i + 1) * per_page])
        nav = _nav(kept_links, i)
        body = (f'<h1>{e(title)}</h1><p><a href="{e(index_href)}">index</a></p>'
                f'<h2>Kept clips {i * per_page + 1}-{i * per_page + len(chunk)} of {n_kept}</h2>{nav}'
                f'<div class="sheet" id="kept">{"".join(_card(dataset, c, thumbs("../")) for c in chunk)}</div>{nav}')
        (pages / kept_links[i][1]).write_text(_page(f"{title} (kept, page {i + 1})", body), encoding="utf-8")

    # The not-kept rows, grouped, in pages of rows_per_page; the index lists the groups.
    order, keys, sizes = _group_order(d)
    n_rows_pages = -(-n_dropped // rows_per_page)
    row_links = [(str(i + 1), f"dropped-{i + 1:06d}.html") for i in range(n_rows_pages)]
    first_page = {}
    for i in range(n_rows_pages):
        page = slice(i * rows_per_page, (i + 1) * rows_per_page)
        chunk = list(zip(keys[page], d.records(order[page])))
        tables, j = [], 0
        while j < len(chunk):
            key = chunk[j][0]
            first_page.setdefault(key, i)
            k = j
            while k < len(chunk) and chunk[k][0] == key:
                k += 1
            tables.append(_table(*key, sizes[key], [c for _, c in chunk[j:k]]))
            j = k
        nav = _nav(row_links, i)
        body = (f'<h1>{e(title)}</h1><p><a href="{e(index_href)}">index</a></p>'
                f'<h2>Not kept: rows {i * rows_per_page + 1}-{i * rows_per_page + len(chunk)} of {n_dropped}</h2>'
                f'{nav}{"".join(tables)}{nav}')
        (pages / row_links[i][1]).write_text(_page(f"{title} (not kept, page {i + 1})", body), encoding="utf-8")
    groups = "".join(
        f'<li><a href="{e(f"{folder_href}/{run}/{row_links[first_page[key]][1]}")}">{e(key[0])}: {e(key[1])}</a>'
        f" ({n})</li>" for key, n in sizes.items())
    rows_nav = _nav([(label, f"{folder_href}/{run}/{href}") for label, href in row_links], -1) if row_links else ""

    first = d.records(d.kept[:per_page])
    index_nav = _nav(from_index, 0)
    body = "".join([
        f"<h1>{e(title)}</h1>", summary,
        f'<h2>Kept clips ({n_kept})</h2>{index_nav}<div class="sheet" id="kept">',
        *(_card(dataset, c, thumbs(f"{folder_href}/")) for c in first), f"</div>{index_nav}",
        f"<h2>Not kept ({n_dropped})</h2><ul>{groups}</ul>{rows_nav}"])
    check()   # again: something may have appeared there while the pages were made
    atomic.write_text(out, _page(title, body))
    # Only now are the earlier run's pages unused, and strips no page shows.
    for name in _listdir(folder):
        if name.startswith("pages-") and name != run:
            shutil.rmtree(folder / name, ignore_errors=True)
    thumbs.prune()
    return out
