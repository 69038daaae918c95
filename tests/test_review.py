"""``wandata review``: the API of the page (every endpoint, its refusals), the journal's
durability (a kill -9 right after an answered write, two writers, a torn line), and the commands
that honour the decisions (export, check, report, caption, train) and an ingest rerun.

The dataset is real: three small generated sources ingested by the real command."""
from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from wandata.cli import main
from wandata.dataset import review
from wandata.dataset.manifest import Manifest
from wandata.review.app import CSRF_HEADER, TOKEN_COOKIE, create_app

from .media import small_sources

SMALL = ["--frames", "33", "--bucket", "416x240", "--detector", "adaptive", "--min-source-scale", "0.5",
         "--preset", "veryfast", "--quiet"]
HOSTILE = '<b>bold</b>, "quoted", café 日本'


def _sigint_default():
    # A test runner started in the background (nohup, `cmd &` without job control) has SIGINT
    # ignored, and children inherit that: put back the default so the child can be interrupted.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def ingest(raw: Path, ds: Path, *extra: str) -> None:
    r = subprocess.run([sys.executable, "-m", "wandata", "ingest", str(raw), "-d", str(ds), *SMALL, *extra],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.fixture(scope="module")
def small_ro(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("review")
    (root / "raw").mkdir()
    small_sources(root / "raw", [90, 70])
    ingest(root / "raw", root / "ds")
    return root / "ds"


@pytest.fixture
def ds(small_ro, tmp_path) -> Path:
    dst = tmp_path / "ds"
    shutil.copytree(small_ro, dst)
    return dst


class Client:
    """The test client with the page's CSRF token, read from the page as the script reads it."""

    def __init__(self, dataset: Path, **kw):
        self.app = create_app(dataset, **kw)
        self.c = self.app.test_client()
        page = self.c.get("/")
        assert page.status_code == 200
        self.csrf = re.search(r'name="wandata-csrf" content="([^"]+)"', page.get_data(as_text=True)).group(1)

    def get(self, url, **kw):
        return self.c.get(url, **kw)

    def post(self, url, body, **kw):
        return self.c.post(url, json=body, headers={CSRF_HEADER: self.csrf}, **kw)

    def ok(self, url, body=None):
        r = self.get(url) if body is None else self.post(url, body)
        assert r.status_code == 200, r.get_data(as_text=True)
        return r.get_json()


def kept_ids(c: Client) -> list[str]:
    return [it["clip_id"] for it in c.ok("/api/clips?status=kept&limit=500")["items"]]


def export_csv(ds: Path, tmp: Path) -> dict[str, str]:
    out = tmp / "export" / "metadata.csv"
    r = CliRunner().invoke(main, ["export", "-d", str(ds), "--format", "csv", "--fallback-caption", "a photo",
                                  "-o", str(out)])
    assert r.exit_code == 0, r.output
    with open(out, newline="", encoding="utf-8") as f:
        return {row["video"]: row["prompt"] for row in csv.DictReader(f)}


def path_of(ds: Path, cid: str) -> str:
    return next(c.path for c in Manifest(ds).all_clips() if c.clip_id == cid)


# --- reading ----------------------------------------------------------------------------------

def test_list_filters_sorts_and_pages_on_the_server(ds):
    c = Client(ds)
    m = Manifest(ds).all_clips()
    kept = [x for x in m if x.status == "kept"]
    everything = c.ok("/api/clips?status=&limit=500")
    assert everything["total"] == len(m) and everything["counts"]["not_reviewed"] == len(kept)
    assert c.ok("/api/clips?status=kept")["total"] == len(kept)
    dropped = c.ok("/api/clips?status=dropped,failed")
    assert {i["clip_id"] for i in dropped["items"]} == {x.clip_id for x in m if x.status != "kept"}
    assert all(i["reason_code"] for i in dropped["items"])
    # paging: two pages of 2 are the first 4 of the whole order
    p1, p2 = c.ok("/api/clips?status=kept&limit=2"), c.ok("/api/clips?status=kept&limit=2&offset=2")
    whole = [i["clip_id"] for i in c.ok("/api/clips?status=kept")["items"]]
    assert [i["clip_id"] for i in p1["items"] + p2["items"]] == whole[:4] and p1["total"] == len(kept)
    # sort by a score, both ways
    desc = [i["scores"]["sharpness"] for i in c.ok("/api/clips?status=kept&sort=sharpness&order=desc")["items"]]
    assert desc == sorted(desc, reverse=True) and len(set(desc)) > 1
    # score range, bucket, source, reason
    mid = sorted(desc)[len(desc) // 2]
    above = c.ok(f"/api/clips?status=kept&min_sharpness={mid}")["items"]
    assert above and all(i["scores"]["sharpness"] >= mid for i in above) and len(above) < len(kept)
    assert c.ok("/api/clips?status=kept&bucket=416x240")["total"] == len(kept)
    assert c.ok("/api/clips?status=kept&bucket=832x480")["total"] == 0
    sid = kept[0].source_id
    assert c.ok(f"/api/clips?status=&source={sid}")["total"] == sum(x.source_id == sid for x in m)
    code = dropped["items"][0]["reason_code"]
    assert c.ok(f"/api/clips?status=&reason={code}")["total"] == sum(x.reason_code == code for x in m)
    # every parameter acts or is refused, naming itself
    for bad, word in (("sort=nope", "sort"), ("order=up", "order"), ("limit=0", "limit"), ("offset=-1", "offset"),
                      ("status=gone", "status"), ("reviewed=maybe", "reviewed"), ("min_motion=x", "min_motion"),
                      ("colour=red", "colour")):
        r = c.get("/api/clips?" + bad)
        assert r.status_code == 400 and word in r.get_json()["error"], bad
    facets = c.ok("/api/facets")
    assert facets["buckets"] == ["416x240"] and "sharpness" in facets["scores"]


def test_caption_search_reviewed_and_edited_filters(ds):
    c = Client(ds)
    ids = kept_ids(c)
    c.ok("/api/caption", {"ids": [ids[0]], "text": "A Red rocket on the pad"})
    c.ok("/api/decide", {"ids": [ids[1]], "action": "kept"})
    assert [i["clip_id"] for i in c.ok("/api/clips?q=red%20ROCKET")["items"]] == [ids[0]]
    assert [i["clip_id"] for i in c.ok("/api/clips?status=kept&reviewed=yes")["items"]] == [ids[1]]
    assert c.ok("/api/clips?status=kept&reviewed=no")["total"] == len(ids) - 1
    assert [i["clip_id"] for i in c.ok("/api/clips?edited=yes")["items"]] == [ids[0]]
    lengths = [len(i["caption"]) for i in c.ok("/api/clips?status=kept&sort=caption_length&order=desc")["items"]]
    assert lengths[0] == len("A Red rocket on the pad")


def test_clip_detail_has_source_shot_window_scores_and_neighbours(ds):
    c = Client(ds)
    m = Manifest(ds).all_clips()
    clip = next(x for x in m if x.status == "kept")
    d = c.ok(f"/api/clip/{clip.clip_id}")
    assert (d["source_path"], d["path"], d["shot"], d["window"]) == (clip.source_path, clip.path, clip.shot_index,
                                                                     clip.window_index)
    assert d["start"] == round(clip.start_s, 3) and d["shot_end"] == round(clip.shot_end_s, 3)
    assert d["scores"]["motion"] == round(clip.motion, 4) and d["source"]["fps"] == 25.0
    same_shot = {x.clip_id for x in m if (x.source_id, x.shot_index) == (clip.source_id, clip.shot_index)}
    assert {n["clip_id"] for n in d["neighbours"]} == same_shot
    assert c.get("/api/clip/no-such-clip").status_code == 404
    src = c.ok("/api/sources")["items"]
    assert {s["source_id"] for s in src} == {x.source_id for x in m}


# --- writing ----------------------------------------------------------------------------------

def test_reject_keep_caption_and_undo_reach_the_export(ds, tmp_path):
    c = Client(ds)
    a, b = kept_ids(c)[:2]
    r = c.ok("/api/decide", {"ids": [a], "action": "rejected", "note": "soft focus"})
    assert r["counts"]["rejected"] == 1 and r["items"][0]["status"] == "rejected"
    c.ok("/api/caption", {"ids": [b], "text": HOSTILE})
    line = [json.loads(x) for x in review.journal_path(ds).read_text(encoding="utf-8").splitlines()]
    assert [(e["clip_id"], e["field"], e["old"], e["new"]) for e in line] == [
        (a, "status", None, "rejected"), (b, "caption", None, HOSTILE)]
    assert line[0]["note"] == "soft focus" and line[0]["identity"].startswith("pixels:") and line[0]["time"]
    rows = export_csv(ds, tmp_path)
    assert path_of(ds, a) not in rows and rows[path_of(ds, b)] == HOSTILE
    d = c.ok(f"/api/clip/{a}")
    assert d["status"] == "rejected" and d["reason_code"] == "rejected_in_review" and "soft focus" in d["reason"]
    # undo goes back one action at a time, across both fields
    c.ok("/api/undo", {})
    assert path_of(ds, b) not in export_csv(ds, tmp_path) or export_csv(ds, tmp_path)[path_of(ds, b)] == "a photo"
    c.ok("/api/undo", {})
    rows = export_csv(ds, tmp_path)
    assert path_of(ds, a) in rows and c.ok("/api/facets")["counts"]["rejected"] == 0
    assert c.post("/api/undo", {}).status_code == 409   # nothing left
    # keep marks reviewed and changes nothing else
    r = c.ok("/api/decide", {"ids": [a], "action": "kept"})
    assert r["items"][0]["reviewed"] and r["items"][0]["status"] == "kept"
    assert path_of(ds, a) in export_csv(ds, tmp_path)


def test_bulk_reject_keep_template_and_replace(ds, tmp_path):
    c = Client(ds, trigger="zq7")
    ids = kept_ids(c)
    c.ok("/api/caption", {"ids": ids[:2], "text": "a rocket, a rocket"})
    r = c.ok("/api/caption", {"ids": ids[:3], "template": "{trigger}, {caption}"})
    assert r["entries"] == 3
    caps = {i["clip_id"]: i["caption"] for i in c.ok("/api/clips?status=kept")["items"]}
    assert caps[ids[0]] == "zq7, a rocket, a rocket" and caps[ids[2]] == "zq7,"
    c.ok("/api/caption", {"ids": ids[:3], "find": "rocket", "replace": "launch vehicle"})
    caps = {i["clip_id"]: i["caption"] for i in c.ok("/api/clips?status=kept")["items"]}
    assert caps[ids[1]] == "zq7, a launch vehicle, a launch vehicle" and caps[ids[2]] == "zq7,"
    r = c.ok("/api/decide", {"ids": ids[:3], "action": "rejected"})
    assert r["counts"]["rejected"] == 3
    rows = export_csv(ds, tmp_path)
    assert not {path_of(ds, i) for i in ids[:3]} & set(rows) and len(rows) == len(ids) - 3
    c.ok("/api/undo", {})   # one bulk action, one undo
    assert c.ok("/api/facets")["counts"]["rejected"] == 0
    c.ok("/api/decide", {"ids": ids, "action": "kept"})
    assert c.ok("/api/facets")["counts"]["not_reviewed"] == 0


def test_refused_writes_change_nothing(ds):
    c = Client(ds, max_chars=20)
    a = kept_ids(c)[0]
    dropped = c.ok("/api/clips?status=dropped,failed")["items"][0]["clip_id"]
    cases = [
        ({"ids": [a], "text": "x" * 21}, "/api/caption", 400, "limit of 20"),
        ({"ids": [a], "text": " \n\t"}, "/api/caption", 400, "empty"),
        ({"ids": [a], "text": "x", "template": "y"}, "/api/caption", 400, "exactly one"),
        ({"ids": [a], "find": "", "replace": "y"}, "/api/caption", 400, "find"),
        ({"ids": [dropped], "text": "x"}, "/api/caption", 409, "no file"),
        ({"ids": [dropped], "action": "kept"}, "/api/decide", 409, "before encoding"),
        ({"ids": [dropped], "action": "rejected"}, "/api/decide", 409, "ingest kept"),
        ({"ids": [a], "action": "maybe"}, "/api/decide", 400, "action"),
        ({"ids": ["nope"], "action": "kept"}, "/api/decide", 404, "not in"),
        ({"ids": "a", "action": "kept"}, "/api/decide", 400, "ids"),
    ]
    for body, url, status, word in cases:
        r = c.post(url, body)
        assert r.status_code == status and word in r.get_json()["error"], (body, r.get_json())
    assert not review.journal_path(ds).exists()


def test_overrule_keeps_a_dropped_clip_only_where_its_file_exists(ds, tmp_path):
    """A drop whose clip file exists can be kept anyway; it is then exported."""
    m = Manifest(ds)
    clip = next(x for x in m.all_clips() if x.status == "kept")
    clip.set("dropped", "filter_blur", finding="sharpness 10 < min_sharpness 40", hint="blurred",
             setting="min_sharpness", name="blur")
    m.save()
    assert path_of(ds, clip.clip_id) not in export_csv(ds, tmp_path)
    c = Client(ds)
    item = next(i for i in c.ok("/api/clips?status=dropped")["items"] if i["clip_id"] == clip.clip_id)
    assert item["can_overrule"] and item["has_file"]
    r = c.ok("/api/decide", {"ids": [clip.clip_id], "action": "kept", "note": "fine by me"})
    assert r["items"][0]["status"] == "kept" and r["items"][0]["overruled"]
    assert path_of(ds, clip.clip_id) in export_csv(ds, tmp_path)


# --- media ------------------------------------------------------------------------------------

def _jpeg(data: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return img


def test_posters_strips_and_video_come_from_inside_the_dataset_and_are_cached(ds):
    c = Client(ds)
    m = Manifest(ds).all_clips()
    clip = next(x for x in m if x.status == "kept")
    poster = c.get(f"/media/clip/{clip.clip_id}/poster.jpg")
    assert poster.status_code == 200 and poster.mimetype == "image/jpeg"
    assert _jpeg(poster.data).shape[1] == 320 and _jpeg(poster.data).mean() > 10   # a picture, not black
    strip = _jpeg(c.get(f"/media/clip/{clip.clip_id}/strip.jpg").data)
    assert strip.shape[1] == 5 * 160
    cache = ds / ".wandata" / "review"
    made = sorted(cache.iterdir())
    assert len(made) == 2 and all(p.suffix == ".jpg" for p in made)
    mtimes = [p.stat().st_mtime_ns for p in made]
    c.get(f"/media/clip/{clip.clip_id}/poster.jpg")
    assert [p.stat().st_mtime_ns for p in sorted(cache.iterdir())] == mtimes   # made once
    data = (ds / clip.path).read_bytes()
    part = c.get(f"/media/clip/{clip.clip_id}/video", headers={"Range": "bytes=100-299"})
    assert part.status_code == 206 and part.data == data[100:300]
    assert c.get(f"/media/clip/{clip.clip_id}/video").data == data
    # a window dropped before encoding: its strip comes from the source, at its times, only
    # when the user named the folder the sources lie in (paths read from the manifest stay
    # inside a root)
    dropped = next(x for x in m if x.status != "kept")
    assert c.get(f"/media/clip/{dropped.clip_id}/strip.jpg").status_code == 404
    assert c.get(f"/media/source/{clip.source_id}/strip.jpg").status_code == 404
    raw = Path(next(iter(Manifest(ds).sources.values())).path).parent
    assert c.get(f"/media/clip/{dropped.clip_id}/video").status_code == 404
    for elsewhere in (ds, raw / "sub"):           # a folder the sources are not in: no picture
        elsewhere.mkdir(exist_ok=True)
        assert Client(ds, sources=elsewhere).get(f"/media/source/{clip.source_id}/strip.jpg").status_code == 404
    c = Client(ds, sources=raw)
    assert _jpeg(c.get(f"/media/clip/{dropped.clip_id}/strip.jpg").data).shape[1] == 800
    assert _jpeg(c.get(f"/media/source/{clip.source_id}/strip.jpg").data).shape[1] == 800
    assert c.get("/media/source/nope/strip.jpg").status_code == 404


def test_media_paths_leading_out_of_the_dataset_are_404(ds, tmp_path):
    outside = tmp_path / "outside.mp4"
    m = Manifest(ds)
    kept = [x for x in m.all_clips() if x.status == "kept"]
    shutil.copy(ds / kept[0].path, outside)
    (ds / "clips" / "link.mp4").symlink_to(outside)
    kept[0].path = "../outside.mp4"
    kept[1].path = str(outside)
    kept[2].path = "clips/link.mp4"
    m.save()
    c = Client(ds)
    for x in kept[:3]:
        for what in ("video", "poster.jpg", "strip.jpg"):
            assert c.get(f"/media/clip/{x.clip_id}/{what}").status_code == 404, (x.path, what)
        assert not c.ok(f"/api/clip/{x.clip_id}")["has_file"]
    for url in ("/media/clip/..%2F..%2Foutside.mp4/video", "/media/clip/../../outside.mp4/video",
                "/static/../app.py", "/static/%2e%2e/app.py", "/media/clip/%2Fetc%2Fpasswd/video"):
        assert c.get(url).status_code == 404, url
    assert not (tmp_path / ".wandata").exists()
    # a cache folder that is a link out of the dataset is not written through
    shutil.rmtree(ds / ".wandata", ignore_errors=True)
    (tmp_path / "elsewhere").mkdir()
    (ds / ".wandata").symlink_to(tmp_path / "elsewhere")
    assert c.get(f"/media/clip/{kept[3].clip_id}/poster.jpg").status_code == 404
    assert not any((tmp_path / "elsewhere").rglob("*.jpg"))


# --- safety -----------------------------------------------------------------------------------

def test_writes_without_the_csrf_token_are_403_and_write_nothing(ds):
    c = Client(ds)
    a = kept_ids(c)[0]
    body = {"ids": [a], "action": "rejected"}
    assert c.c.post("/api/decide", json=body).status_code == 403
    assert c.c.post("/api/decide", json=body, headers={CSRF_HEADER: "x" + c.csrf}).status_code == 403
    assert c.c.post("/api/undo", json={}).status_code == 403
    assert c.c.post("/api/caption", data="ids=a&text=x", headers={CSRF_HEADER: c.csrf},
                    content_type="application/x-www-form-urlencoded").status_code == 415
    assert c.c.get("/api/decide").status_code == 405   # writes are POSTs only
    assert not review.journal_path(ds).exists()
    other = Client(ds)   # another server run: another token
    assert other.csrf != c.csrf and other.c.post("/api/decide", json=body,
                                                 headers={CSRF_HEADER: c.csrf}).status_code == 403


def test_loopback_server_refuses_other_host_names(ds):
    c = Client(ds)
    assert c.get("/", headers={"Host": "evil.example:8765"}).status_code == 403
    assert c.get("/api/clips", headers={"Host": "127.0.0.1:8765"}).status_code == 200
    assert c.get("/api/clips", headers={"Host": "[::1]:8765"}).status_code == 200


def test_remote_server_needs_the_token_on_every_request(ds):
    app = create_app(ds, access_token="s3cret-token")
    c = app.test_client()
    assert c.get("/", headers={"Host": "10.0.0.5:8765"}).status_code == 403
    assert c.get("/api/clips?token=wrong", headers={"Host": "10.0.0.5:8765"}).status_code == 403
    assert c.get("/static/review.js").status_code == 403
    page = c.get("/?token=s3cret-token", headers={"Host": "10.0.0.5:8765"})
    assert page.status_code == 200 and TOKEN_COOKIE in page.headers["Set-Cookie"]
    assert "HttpOnly" in page.headers["Set-Cookie"]
    assert c.get("/api/clips", headers={"Host": "10.0.0.5:8765"}).status_code == 200   # the cookie now
    r = CliRunner().invoke(main, ["review", "-d", str(ds), "--host", "0.0.0.0"])
    assert r.exit_code == 2 and "--allow-remote" in r.output and "--host" in r.output
    r = CliRunner().invoke(main, ["review", "-d", str(ds), "--allow-remote"])
    assert r.exit_code == 2 and "--allow-remote" in r.output


def test_page_escapes_and_sets_a_strict_policy(tmp_path, ds):
    weird = tmp_path / 'd<script>alert(1)</script>"x'
    shutil.copytree(ds, weird)
    c = Client(weird)
    page = c.get("/")
    text = page.get_data(as_text=True)
    assert "<script>alert(1)" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;&#34;x" in text
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert "innerHTML" not in (Path(__file__).parent.parent / "wandata/review/static/review.js").read_text()


def test_missing_dataset_is_a_usage_error(tmp_path):
    r = CliRunner().invoke(main, ["review", "-d", str(tmp_path / "none")])
    assert r.exit_code == 2 and "manifest.parquet" in r.output


# --- durability -------------------------------------------------------------------------------

def _start(ds: Path) -> tuple[subprocess.Popen, str]:
    p = subprocess.Popen([sys.executable, "-m", "wandata", "review", "-d", str(ds), "--port", "0", "--json"],
                         preexec_fn=_sigint_default,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    assert line, p.stderr.read()
    return p, json.loads(line)["url"]


def _csrf(url: str) -> str:
    page = urllib.request.urlopen(url, timeout=30).read().decode()
    return re.search(r'name="wandata-csrf" content="([^"]+)"', page).group(1)


def _post(url: str, path: str, body: dict, csrf: str) -> dict:
    req = urllib.request.Request(url.rstrip("/") + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", CSRF_HEADER: csrf})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200
        return json.loads(r.read())


def test_kill_9_right_after_an_answered_write_loses_nothing(ds, tmp_path):
    ids = [c.clip_id for c in Manifest(ds).all_clips() if c.status == "kept"]
    p, url = _start(ds)
    try:
        csrf = _csrf(url)
        _post(url, "/api/caption", {"ids": [ids[1]], "text": HOSTILE}, csrf)
        answer = _post(url, "/api/decide", {"ids": [ids[0]], "action": "rejected"}, csrf)
        os.kill(p.pid, signal.SIGKILL)   # on the OK: nothing after it may be needed
        assert answer["ok"]
    finally:
        p.kill()
        p.wait(timeout=30)
    assert p.returncode == -signal.SIGKILL
    rows = export_csv(ds, tmp_path)
    assert path_of(ds, ids[0]) not in rows and rows[path_of(ds, ids[1])] == HOSTILE


def test_ctrl_c_stops_the_server_cleanly(ds):
    p, url = _start(ds)
    assert urllib.request.urlopen(url + "api/clips", timeout=30).status == 200
    p.send_signal(signal.SIGINT)
    assert p.wait(timeout=30) == 0
    p, url = _start(ds)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=30) == 0


def _writer(ds: str, clip_id: str, n: int) -> None:
    from wandata.dataset.records import ClipRecord
    c = ClipRecord(clip_id, "s", "p", 0, 0, 0.0, 1.0, decoded_digest="d")
    for i in range(n):
        review.append(ds, [review.entry(c, "caption", None, f"{clip_id} {i} " + "x" * 20000, batch=f"{clip_id}{i}",
                                        session=clip_id)])


def test_two_writers_never_interleave_lines(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), f"w{k}", 40)) for k in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    j = review.read(tmp_path)
    assert not j.bad_lines and len(j.entries) == 120
    assert sorted(int(e["new"].split()[1]) for e in j.entries if e["clip_id"] == "w1") == list(range(40))


def test_a_torn_last_line_is_skipped_and_the_next_entry_is_whole(tmp_path):
    from wandata.dataset.records import ClipRecord
    c = ClipRecord("c1", "s", "p", 0, 0, 0.0, 1.0, decoded_digest="d")
    review.append(tmp_path, [review.entry(c, "status", None, "rejected", batch="b1", session="s")])
    with open(review.journal_path(tmp_path), "ab") as f:
        f.write(b'{"v": 1, "clip_id": "c1", "fie')   # a writer killed mid-line, never answered
    assert review.fold(review.read(tmp_path).entries)["c1"]["status"].value == "rejected"
    review.append(tmp_path, [review.entry(c, "status", "rejected", "kept", batch="b2", session="s")])
    j = review.read(tmp_path)
    assert len(j.entries) == 2 and j.bad_lines == [2]
    assert review.fold(j.entries)["c1"]["status"].value == "kept"
    (tmp_path / "elsewhere").write_text("")
    os.remove(review.journal_path(tmp_path))
    os.symlink(tmp_path / "elsewhere", review.journal_path(tmp_path))
    with pytest.raises(OSError):   # a link at the journal's name is not written through
        review.append(tmp_path, [review.entry(c, "status", None, "kept", batch="b3", session="s")])
    assert (tmp_path / "elsewhere").read_text() == ""


# --- the other commands -----------------------------------------------------------------------

def test_decisions_survive_an_ingest_rerun_and_changed_clips_are_stale(tmp_path):
    (tmp_path / "raw").mkdir()
    small_sources(tmp_path / "raw", [90, 70])
    ds = tmp_path / "ds"
    ingest(tmp_path / "raw", ds)
    c = Client(ds)
    a, b = kept_ids(c)[:2]
    c.ok("/api/decide", {"ids": [a], "action": "rejected"})
    c.ok("/api/caption", {"ids": [b], "text": HOSTILE})
    # the same sources ingested again from nothing: the same clips, so the same decisions
    (ds / "manifest.parquet").unlink()
    shutil.rmtree(ds / "clips")
    ingest(tmp_path / "raw", ds)
    rows = export_csv(ds, tmp_path)
    assert path_of(ds, a) not in rows and rows[path_of(ds, b)] == HOSTILE
    assert Client(ds).ok("/api/facets")["counts"]["stale"] == 0
    # other settings make other pictures: the decisions no longer apply, and say so
    ingest(tmp_path / "raw", ds, "--crf", "30")
    rows = export_csv(ds, tmp_path)
    assert path_of(ds, a) in rows and rows[path_of(ds, b)] == "a photo"
    counts = Client(ds).ok("/api/facets")["counts"]
    assert counts["stale"] == 2 and counts["rejected"] == 0
    ov = review.overlay(ds, Manifest(ds).all_clips())
    assert sorted((s["clip_id"], s["field"]) for s in ov.stale) == [(a, "status"), (b, "caption")]


def test_check_report_caption_and_train_honour_the_review(ds, tmp_path):
    from wandata.caption.run import caption_clips
    from wandata.caption.registry import make
    from wandata.export.check import resolve
    from wandata.report.html import build
    from wandata.train.config import ConfigError
    from wandata.train.config import resolve as train_resolve

    c = Client(ds)
    ids = kept_ids(c)
    a, b = ids[:2]
    c.ok("/api/decide", {"ids": [a], "action": "rejected"})
    c.ok("/api/caption", {"ids": [b], "text": HOSTILE})
    target = resolve(ds)
    assert {r.video for r in target.rows} == {path_of(ds, i) for i in ids[1:]}
    assert next(r.prompt for r in target.rows if r.video == path_of(ds, b)) == HOSTILE
    page = build(ds)
    kept_part = page.split('id="kept"')[1].split("<h2>")[0]
    assert kept_part.count('<div class="clip">') == len(ids) - 1
    assert "&lt;b&gt;bold&lt;/b&gt;, &quot;quoted&quot;, café 日本" in kept_part
    assert "rejected in review" in page
    # a captioner run captions neither the rejected clip nor over the reviewed caption
    m = Manifest(ds)
    s = caption_clips(m, make("template", {"template": "auto"}), progress=False)
    assert s.captioned == len(ids) - 2 and s.skipped == 1
    got = {x.clip_id: x.caption for x in Manifest(ds).all_clips()}
    assert got[a] == "" and got[b] == ""   # the manifest holds the captioner's; the review's wins when read
    assert export_csv(ds, tmp_path)[path_of(ds, b)] == HOSTILE
    # train reads the export: a decision after it makes train refuse until re-exported
    time.sleep(0.01)
    c.ok("/api/decide", {"ids": [ids[2]], "action": "rejected"})
    with pytest.raises(ConfigError, match="re-run `wandata export`"):
        train_resolve(dataset=tmp_path / "export")
    export_csv(ds, tmp_path)
    try:
        train_resolve(dataset=tmp_path / "export")
    except ConfigError as e:
        assert "review" not in str(e)
