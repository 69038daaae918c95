"""Time to the first page of ``wandata review`` with 100 and 20,000 clips (issue 14: under 1 s).

Builds a manifest of N synthetic clip rows (no video files: the posters answer 404 at once, so
what is timed is the page and the API, not ffmpeg), serves it with the real server (werkzeug's
threaded server in this process) and times, server start excluded:

* ``GET /`` + ``/api/facets`` + the first ``/api/clips`` page: what the page fetches to show the grid;
* the same page after a decision (a write, then the list again: one row is rebuilt, not N);
* with Chromium and Playwright installed: navigation start to the grid rendered, in the browser.

    python3 bench/review_load.py [--sizes 100,20000] [--repeat 5]
"""
from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from werkzeug.serving import make_server

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # run from a checkout

from wandata.dataset.manifest import Manifest
from wandata.dataset.records import ClipRecord, SourceRecord
from wandata.review.app import CSRF_HEADER, create_app


def build(folder: Path, n: int) -> None:
    m = Manifest(folder)
    per_source = 50
    for s in range(max(1, n // per_source)):
        sid = f"{s:012x}abcd"   # the first 12 digits name the clips: unique per source
        src = SourceRecord(path=f"/videos/source_{s:05d}.mp4", source_id=sid, content_hash=sid * 4, size_bytes=1,
                           duration_s=60.0, fps=25.0, display_width=1920, display_height=1080)
        clips = []
        for w in range(min(per_source, n - s * per_source)):
            c = ClipRecord(f"{sid[:12]}-s{w:03d}-w00", sid, src.path, w, 0, w * 1.0, w * 1.0 + 6.0,
                           start_s=w * 1.0, end_s=w * 1.0 + 5.06, num_frames=81, fps=16.0, bucket="832x480",
                           width=832, height=480, path="", decoded_digest=f"{s:08x}{w:08x}",
                           caption=f"a shot of thing {w} in source {s}, slow pan", motion=w % 7 + 0.5,
                           sharpness=100.0 + w, brightness=90.0 + w % 30, contrast=40.0, text=0.0)
            clips.append(c)
        m.put(src, clips)
    m.save()


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as r:
        return r.read()


def first_page(base: str) -> float:
    t = time.perf_counter()
    page = get(base).decode()
    get(base + "api/facets")
    get(base + "api/clips?status=kept%2Crejected&sort=clip&order=asc&offset=0&limit=60")
    assert "wandata-csrf" in page
    return time.perf_counter() - t


def after_write(base: str, csrf: str, cid: str) -> float:
    body = json.dumps({"ids": [cid], "action": "rejected"}).encode()
    req = urllib.request.Request(base + "api/decide", data=body, method="POST",
                                 headers={"Content-Type": "application/json", CSRF_HEADER: csrf})
    t = time.perf_counter()
    urllib.request.urlopen(req, timeout=60).read()
    get(base + "api/clips?status=kept%2Crejected&offset=0&limit=60")
    return time.perf_counter() - t


def in_browser(base: str) -> float | None:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not exe:
        return None
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        try:
            page = b.new_page()
            page.goto(base)   # warm: the browser's own start is not the page's
            page.wait_for_selector("body[data-loaded='1']")
            times = []
            for _ in range(3):
                page.goto(base)
                page.wait_for_selector("body[data-loaded='1']")
                times.append(page.evaluate("performance.now()") / 1000)
            return statistics.median(times)
        finally:
            b.close()


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)   # no line per request
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,20000")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    rows = []
    for n in (int(x) for x in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            ds = Path(tmp) / "ds"
            build(ds, n)
            assert len({c.clip_id for c in Manifest(ds).all_clips()}) == n
            t = time.perf_counter()
            app = create_app(ds)
            start = time.perf_counter() - t
            server = make_server("127.0.0.1", 0, app, threaded=True)
            th = threading.Thread(target=server.serve_forever, daemon=True)
            th.start()
            base = f"http://127.0.0.1:{server.port}/"
            try:
                first_page(base)   # warm: Python's imports and Jinja's template compile
                page = statistics.median(first_page(base) for _ in range(args.repeat))
                csrf = re.search(r'name="wandata-csrf" content="([^"]+)"', get(base).decode()).group(1)
                ids = [it["clip_id"] for it in json.loads(get(base + "api/clips?limit=10"))["items"]]
                write = statistics.median(after_write(base, csrf, ids[i % len(ids)]) for i in range(args.repeat))
                browser = in_browser(base)
            finally:
                server.shutdown()
            rows.append((n, start, page, write, browser))
    print(f"{'clips':>7} | {'server start (excl.)':>20} | {'GET / + first page':>18} | "
          f"{'write + page':>12} | {'browser: to grid':>16}")
    print(f"{'-' * 7}-+-{'-' * 20}-+-{'-' * 18}-+-{'-' * 12}-+-{'-' * 16}")
    for n, start, page, write, browser in rows:
        b = f"{browser * 1000:.0f} ms" if browser is not None else "n/a"
        print(f"{n:>7} | {start * 1000:>17.0f} ms | {page * 1000:>15.0f} ms | {write * 1000:>9.0f} ms | {b:>16}")


if __name__ == "__main__":
    main()
