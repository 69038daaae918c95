"""``wandata report``: one self-contained HTML page showing what a dataset will train on.

A contact sheet of every kept clip (three frames, caption, scores, bucket), the dropped
ones grouped by reason, histograms of shot lengths and scores, and totals. Thumbnails are
inline JPEG data and the charts inline SVG: the page needs no network and no other file,
so it can be mailed or archived with the dataset. Every string that comes from a file
name, a caption or a reason is escaped: captions are free text and file names can hold
anything, including markup.

The page is written only where nothing is, or over an earlier report: one that carries the
``<meta name="generator" content="wandata report">`` tag (or, from before the tag, starts
as this module's pages always did). A clip whose manifest path leads outside the dataset
gets no thumbnails (``path_outside_root`` on its card): nothing outside is read.
"""
from __future__ import annotations

import base64
import html
from collections import defaultdict
from pathlib import Path

import av
import cv2
import numpy as np

from wandata import atomic
from wandata.confine import OUTSIDE_ROOT, OutsideRoot, inside
from wandata.dataset import reasons, review, totals
from wandata.dataset.manifest import Manifest
from wandata.dataset.records import KEPT, ClipRecord

GENERATOR = '<meta name="generator" content="wandata report">'
# How every page began before the generator tag: such a page is ours too.
LEGACY_START = '<!doctype html><html><head><meta charset="utf-8"><title>wandata report</title>'

THUMB_W = 160
SCORES = (("motion", "motion (% width/s)"), ("sharpness", "sharpness"),
          ("brightness", "brightness"), ("contrast", "contrast"), ("text", "text area"))
CSS = """
body{font:14px system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:22px}h2{font-size:18px;margin-top:32px}
.totals span{display:inline-block;margin-right:18px}
.sheet{display:flex;flex-wrap:wrap;gap:12px}
.clip{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px;width:500px}
.clip img{height:90px;margin-right:2px}
.clip .meta{color:#555;font-size:12px;margin-top:4px;word-break:break-all}
.clip .caption{margin-top:4px}
.flag{color:#a60}
.charts{display:flex;flex-wrap:wrap;gap:16px}
.charts figure{margin:0;background:#fff;border:1px solid #ddd;padding:6px}
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #ddd;padding:3px 6px;text-align:left;font-size:12px}
"""


def e(value) -> str:
    return html.escape(str(value), quote=True)


def thumbnails(path: Path, count: int = 3) -> list[str]:
    """``count`` frames spread over a clip as JPEG data URIs."""
    try:
        with av.open(str(path)) as c:
            frames = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
    except (av.error.FFmpegError, OSError):
        return []
    picks = [frames[round(i * (len(frames) - 1) / max(count - 1, 1))] for i in range(count)] if frames else []
    out = []
    for img in picks:
        h = round(img.shape[0] * THUMB_W / img.shape[1])
        ok, jpg = cv2.imencode(".jpg", cv2.resize(img, (THUMB_W, h), interpolation=cv2.INTER_AREA),
                               [cv2.IMWRITE_JPEG_QUALITY, 80])
        if ok:
            out.append("data:image/jpeg;base64," + base64.b64encode(jpg.tobytes()).decode())
    return out


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
    return reasons.label(c.reason_code) if c.reason_code else "no reason code (an older manifest)"


def _card(dataset: Path, c: ClipRecord) -> str:
    flags = "".join(f'<div class="flag">{e(f)}</div>' for f in c.flags)
    try:
        imgs = "".join(f'<img src="{src}" alt="">'
                       for src in thumbnails(inside(dataset, c.path, "clip path in the manifest")))
    except OutsideRoot as why:
        imgs = ""
        flags += f'<div class="flag">{OUTSIDE_ROOT}: {e(why)}</div>'
    scores = " · ".join(f"{label} {getattr(c, key):g}" for key, label in SCORES if getattr(c, key) >= 0)
    caption = e(c.caption) if c.caption else "<i>no caption</i>"
    return (f'<div class="clip"><div>{imgs}</div><div class="caption">{caption}</div>'
            f'<div class="meta">{e(c.bucket)} · {c.num_frames} frames · {e(c.path)}<br>{e(scores)}</div>'
            f'{flags}</div>')


def build(dataset: Path) -> str:
    dataset = Path(dataset)
    m = Manifest(dataset)
    clips = review.reviewed(dataset, m.all_clips())   # decisions of `wandata review`
    kept = [c for c in clips if c.status == KEPT]
    parts = [f"<h1>wandata dataset: {e(dataset.resolve())}</h1>", _totals(m, clips),
             _charts(m, clips),
             f'<h2>Kept clips ({len(kept)})</h2><div class="sheet" id="kept">',
             *(_card(dataset, c) for c in kept), "</div>",
             _not_kept([c for c in clips if c.status != KEPT])]
    return (f"{LEGACY_START}{GENERATOR}"
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>")


def _totals(m: Manifest, clips: list[ClipRecord]) -> str:
    """Counted as the plan and the ingest summary count (``dataset.totals``)."""
    t = totals.count(m.sources.values(), clips)
    spans = [f"<span><b>{name}</b>: {e(', '.join(f'{v} {k}' for k, v in sorted(counter.items())) or 'none')}</span>"
             for name, counter in (("sources", t.sources), ("clips", t.clips), ("buckets", t.buckets))]
    return f'<div class="totals">{"".join(spans)}<span><b>kept</b>: {t.seconds:.1f} s</span></div>'


def _charts(m: Manifest, clips: list[ClipRecord]) -> str:
    shot_lengths = [b - a for s in m.sources.values() for a, b in s.shots]
    scored = [c for c in clips if c.sharpness >= 0]
    charts = [histogram("shot length (s)", shot_lengths)]
    charts += [histogram(label, [getattr(c, key) for c in scored if getattr(c, key) >= 0])
               for key, label in SCORES]
    return f'<h2>Distributions</h2><div class="charts">{"".join(charts)}</div>'


def _not_kept(clips: list[ClipRecord]) -> str:
    """Dropped and failed clips in one table per status and reason, the largest group first."""
    groups = defaultdict(list)
    for c in clips:
        groups[(c.status, _why(c))].append(c)
    parts = [f"<h2>Not kept ({len(clips)})</h2>"]
    for (status, why), group in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        rows = "".join(f"<tr><td>{e(Path(c.source_path).name)}</td><td>{c.shot_index}</td>"
                       f"<td>{c.window_index}</td><td>{e(c.reason)}</td></tr>" for c in group)
        parts.append(f'<h3>{e(status)}: {e(why)} ({len(group)})</h3><table class="dropped">'
                     f"<tr><th>source</th><th>shot</th><th>window</th><th>reason</th></tr>{rows}</table>")
    return "".join(parts)


def is_report(path: Path) -> bool:
    """Whether ``path`` is a page this module wrote (so it may be replaced)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096).decode("utf-8", errors="replace")
    except OSError:
        return False
    return GENERATOR in head or head.startswith(LEGACY_START)


def write(dataset: Path, out: Path | None = None) -> Path:
    """Write the page; ``atomic.OutputRefused`` (nothing written) if ``out`` holds another file."""
    out = Path(out) if out else Path(dataset) / "report.html"
    how = f"a report carries {GENERATOR}"
    atomic.check_file(out, is_report, dataset=dataset, what="report", how=how)
    text = build(dataset)
    atomic.check_file(out, is_report, dataset=dataset, what="report", how=how)
    atomic.write_text(out, text)
    return out

