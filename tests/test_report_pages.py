"""The paged report (issue 17 point 3): pages link to each other and to the index, every string
is escaped, and the thumbnails are JPEG files inside the report's own folder."""
from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest

from wandata.atomic import OutputRefused
from wandata.dataset.manifest import Manifest
from wandata.report.html import files_dir, write

HOSTILE = '<script>alert(1)</script><img src=x onerror=alert(2)>"café" & 日本'


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs, self.imgs, self.tags = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        a = dict(attrs)
        if tag == "a":
            self.hrefs.append(a["href"])
        if tag == "img":
            self.imgs.append(a["src"])


def parse(page: Path) -> Links:
    p = Links()
    p.feed(page.read_text(encoding="utf-8"))
    return p


def crawl(index: Path) -> dict[Path, Links]:
    """Every page reachable from the index by its links (all must exist)."""
    seen, todo = {}, [index.resolve()]
    while todo:
        page = todo.pop()
        if page in seen:
            continue
        seen[page] = parse(page)
        for href in seen[page].hrefs:
            if href.startswith("#"):
                continue
            target = (page.parent / unquote(href)).resolve()
            assert target.is_file(), f"{page.name} links to {href}, which is not there"
            todo.append(target)
    return seen


def test_pages_link_to_each_other_escape_and_keep_thumbnails_in_the_report_folder(sample_dataset, tmp_path):
    m = Manifest(sample_dataset)
    kept = [c for c in m.all_clips() if c.status == "kept"]
    assert len(kept) >= 3
    kept[1].caption = HOSTILE
    m.save()
    out = tmp_path / 'a "b" <c>.html'            # a hostile name for the pages to link to
    before = {p for p in tmp_path.rglob("*")}
    index = write(sample_dataset, out, per_page=2)
    folder = files_dir(out)
    pages = crawl(index)
    n_pages = -(-len(kept) // 2)
    kept_pages = [p for p in pages if p.name.startswith("kept-")]
    assert len(kept_pages) == n_pages - 1                        # the index is the first page
    cards = sum(p.read_text(encoding="utf-8").count('<div class="clip">') for p in pages)
    assert cards == len(kept)
    for page, links in pages.items():
        text = page.read_text(encoding="utf-8")
        assert "script" not in links.tags and "<script" not in text
        if page != index.resolve():
            assert any(unquote(h).endswith(out.name) for h in links.hrefs)   # back to the index
        for src in links.imgs:                                   # thumbnails: files in the report folder
            f = (page.parent / unquote(src)).resolve()
            assert f.is_file() and folder.resolve() in f.parents and f.read_bytes()[:2] == b"\xff\xd8"
            assert "data:" not in src
    all_text = "".join(p.read_text(encoding="utf-8") for p in pages)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in all_text and "café" in all_text
    assert sum(len(links.imgs) for links in pages.values()) == len(kept)
    made = {p for p in tmp_path.rglob("*")} - before
    assert all(p == out or folder in p.parents or p == folder for p in made)
    assert not list(sample_dataset.rglob("*.jpg"))                 # nothing written into the dataset

    # a second run reuses the strips, replaces the pages, and removes the earlier run's pages
    strips = {p: p.stat().st_mtime_ns for p in (folder / "thumbs").rglob("*.jpg")}
    old_pages = {p.parent for p in kept_pages}
    write(sample_dataset, out, per_page=2)
    assert {p: p.stat().st_mtime_ns for p in (folder / "thumbs").rglob("*.jpg")} == strips
    assert not any(d.exists() for d in old_pages)
    crawl(out)


def test_a_foreign_report_folder_is_refused_before_anything_is_written(sample_dataset, tmp_path):
    out = tmp_path / "report.html"
    mine = files_dir(out)
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(OutputRefused):
        write(sample_dataset, out)
    assert not out.exists() and sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


def test_the_dropped_rows_are_paged_and_grouped(sample_dataset, tmp_path):
    m = Manifest(sample_dataset)
    dropped = [c for c in m.all_clips() if c.status != "kept"]
    assert dropped
    index = write(sample_dataset, tmp_path / "r.html", rows_per_page=1)
    pages = crawl(index)
    rows = [p for p in pages if p.name.startswith("dropped-")]
    assert len(rows) == len(dropped)
    assert all(len(re.findall(r"<h3>", p.read_text(encoding="utf-8"))) == 1 for p in rows)


def test_the_index_counts_and_charts_what_the_records_hold(sample_dataset, tmp_path):
    """Totals and charts come from columns; they are those of every clip as a record, reviewed
    (dataset.totals counts them for the plan and the ingest summary too)."""
    from wandata.dataset import review, totals
    from wandata.report.html import SCORES, e, histogram

    m = Manifest(sample_dataset)
    clips = m.all_clips()
    b = review.new_batch()
    review.append(sample_dataset, [review.entry(next(c for c in clips if c.status == "kept"), "status", None,
                                                "rejected", batch=b, session="t")])
    reader = Manifest.reader(sample_dataset)
    clips = review.reviewed(sample_dataset, reader.all_clips())
    t = totals.count(reader.sources.values(), clips)
    spans = "".join(f"<span><b>{name}</b>: {e(', '.join(f'{v} {k}' for k, v in sorted(c.items())) or 'none')}</span>"
                    for name, c in (("sources", t.sources), ("clips", t.clips), ("buckets", t.buckets)))
    scored = [c for c in clips if c.sharpness >= 0]
    charts = [histogram("shot length (s)", [b - a for s in reader.sources.values() for a, b in s.shots])]
    charts += [histogram(label, [getattr(c, key) for c in scored if getattr(c, key) >= 0]) for key, label in SCORES]
    text = write(sample_dataset, tmp_path / "r.html").read_text(encoding="utf-8")
    assert f'<div class="totals">{spans}<span><b>kept</b>: {t.seconds:.1f} s</span></div>' in text
    assert f'<div class="charts">{"".join(charts)}</div>' in text
    assert t.clips.get("dropped", 0) >= 1 and "rejected in review" in text
