"""Quality filters and black borders, each defect planted in generated footage."""
from __future__ import annotations

import os
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from wandata import quality
from tools import synth
from wandata.settings import Settings, SettingsError
from wandata.dataset.manifest import Manifest
from wandata.ingest.run import ingest

from .media import decode

SMALL = ((416, 240), (240, 416))
W, H, FPS, N = 640, 368, 24, 48  # 2 s per source: room for one 17-frame clip after trims


def _encode(path: Path, frames, crf: int = 20) -> None:
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        s.options = {"crf": str(crf), "preset": "ultrafast"}
        for img in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        c.mux(s.encode(None))


def _pan(photo: str, seed: int, start: int = 0, w: int = W, h: int = H) -> list[np.ndarray]:
    # A pan clearly faster than min_motion, so "moving" is never borderline.
    shot = synth.Shot(photo, N + 8, (1.0, 1.25), ((0.2, 0.3), (0.6, 0.5)))
    return [synth.render_frame(shot, i, w, h) for i in range(start, start + N)]


def _text(img: np.ndarray) -> np.ndarray:
    img = img.copy()
    for line, y in (("SUBSCRIBE NOW", 150), ("LIMITED OFFER", 250)):
        cv2.putText(img, line, (40, y), cv2.FONT_HERSHEY_DUPLEX, 2.0, (0, 0, 0), 12, cv2.LINE_AA)
        cv2.putText(img, line, (40, y), cv2.FONT_HERSHEY_DUPLEX, 2.0, (255, 255, 255), 4, cv2.LINE_AA)
    return img


def _pillarbox(img_43: np.ndarray) -> np.ndarray:
    out = np.zeros((H, W, 3), np.uint8)
    x = (W - img_43.shape[1]) // 2
    out[:, x:x + img_43.shape[1]] = img_43
    return out


def make_sources(raw: Path) -> None:
    """One source per defect (one shot each, so detector="none" is exact)."""
    raw.mkdir(parents=True, exist_ok=True)
    _encode(raw / "a_good.mp4", _pan("astronaut", 0))
    _encode(raw / "b_copy_of_good.mp4", _pan("astronaut", 0, start=2), crf=28)  # re-encode, offset
    still = synth.render_frame(synth.Shot("coffee", 2, (1.1, 1.1), ((0.5, 0.5), (0.5, 0.5))), 0, W, H)
    _encode(raw / "c_static.mp4", [still] * N)
    _encode(raw / "d_blurred.mp4", [cv2.GaussianBlur(f, (0, 0), 6) for f in _pan("chelsea", 0)])
    _encode(raw / "e_dark.mp4", [(f * 0.06).astype(np.uint8) for f in _pan("rocket", 0)])
    _encode(raw / "f_text.mp4", [_text(f) for f in _pan("coins", 0)])
    _encode(raw / "g_pillarbox.mp4", [_pillarbox(f) for f in _pan("coffee", 0, w=480, h=H)])


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("quality")
    make_sources(root / "raw")
    out = root / "ds"
    ingest([root / "raw"], out, Settings(frames=17, buckets=SMALL, detector="none"), progress=False)
    m = Manifest(out)
    by_name = {Path(p).name: (m.sources[p], m.clips[p]) for p in m.sources}
    return out, by_name


@pytest.mark.parametrize("name, filter_, score", [
    ("c_static.mp4", "static", "motion"),
    ("d_blurred.mp4", "blur", "sharpness"),
    ("e_dark.mp4", "dark", "brightness"),
    ("f_text.mp4", "text", "text area"),
])
def test_each_planted_defect_is_dropped_with_its_reason_and_never_encoded(planted, name, filter_, score):
    out, by_name = planted
    src, clips = by_name[name]
    assert len(clips) == 1
    c = clips[0]
    assert c.status == "dropped" and c.window_index == 0
    # The first (main) reason is the planted defect, naming the score and the threshold.
    assert c.reason.startswith(f"dropped by quality filter {filter_}: {score} "), c.reason
    assert "min_" in c.reason or "max_" in c.reason
    assert c.path == "" and not list((out / "clips").glob(f"{name[:-4].replace('_', '-')}*/*.mp4"))
    assert src.status == "dropped" and "quality filters" in src.reason


def test_good_footage_is_kept_with_its_scores(planted):
    out, by_name = planted
    _, (c,) = by_name["a_good.mp4"]
    assert c.status == "kept" and (out / c.path).exists()
    assert c.motion > 0.5 and c.sharpness > 100 and 40 < c.brightness < 200 and c.contrast > 20
    assert c.text < 0.005 and len(c.phash) == quality.SAMPLES and not c.flags


def test_near_duplicate_across_sources_keeps_the_first(planted):
    out, by_name = planted
    _, (orig,) = by_name["a_good.mp4"]
    _, (copy,) = by_name["b_copy_of_good.mp4"]
    assert orig.status == "kept"
    assert copy.status == "dropped" and copy.reason.startswith("dropped by quality filter duplicate")
    assert orig.path in copy.reason and copy.path == ""
    kept_files = list((out / "clips").rglob("*.mp4"))
    assert len(kept_files) == 2  # a_good and g_pillarbox; nothing else was encoded or left


def test_pillarbox_is_detected_and_cropped(planted):
    out, by_name = planted
    src, (c,) = by_name["g_pillarbox.mp4"]
    x, y, w, h = src.crop
    assert 80 <= x <= 84 and y == 0 and 472 <= w <= 476 and h == H  # the 480 px picture, bars off
    assert c.status == "kept" and c.bucket == "416x240"
    frames, _ = decode(out / c.path)
    for f in frames[::8]:
        luma = f.mean(axis=2)
        assert luma[:, :3].mean() > 40 and luma[:, -3:].mean() > 40  # no black bar at the edges


def test_failed_test_of_a_disabled_filter_is_a_flag_not_a_drop(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    still = synth.render_frame(synth.Shot("coffee", 2, (1.1, 1.1), ((0.5, 0.5), (0.5, 0.5))), 0, W, H)
    _encode(raw / "still.mp4", [still] * N)
    out = tmp_path / "ds"
    ingest([raw], out, Settings(frames=17, buckets=SMALL, detector="none", filters=("blur",)),
           progress=False)
    (c,) = Manifest(out).all_clips()
    assert c.status == "kept" and (out / c.path).exists()
    assert c.flags and c.flags[0].startswith("static: motion")


def test_letterbox_detection_and_fit_on_the_picture_inside(tmp_path):
    from wandata.media import borders
    from wandata.media.bucket import fit
    frames = [np.zeros((H, W, 3), np.uint8) for _ in range(N)]
    for i, f in enumerate(frames):  # a 2.35:1 picture in a 16:9 frame
        f[96:272] = synth.render_frame(synth.Shot("rocket", N, (1.0, 1.2), ((0.3, 0.3), (0.6, 0.6))), i, W, 176)
    _encode(tmp_path / "scope.mp4", frames)
    x, y, w, h = borders.detect(str(tmp_path / "scope.mp4"), 0, N / FPS)
    assert x == 0 and w == W and 96 <= y <= 100 and 168 <= h <= 176
    f = fit(W, H, SMALL, (x, y, w, h))
    assert f.crop_y >= y * f.scale and f.crop_y + f.height <= (y + h) * f.scale


def test_a_dark_band_on_one_side_only_is_not_a_bar(tmp_path):
    from wandata.media import borders
    frames = []
    for f in _pan("astronaut", 0):
        f = f.copy()
        f[:110] = 0  # a night sky along the top, nothing at the bottom
        frames.append(f)
    _encode(tmp_path / "sky.mp4", frames)
    assert borders.detect(str(tmp_path / "sky.mp4"), 0, N / FPS) is None


def test_filters_setting_is_validated():
    assert Settings(filters="static,blur").filters == ("static", "blur")
    with pytest.raises(SettingsError, match="unknown"):
        Settings(filters=("sharp",))


def test_filter_table_agrees_with_the_settings_and_the_reason_codes():
    import dataclasses

    from wandata.dataset import reasons
    from wandata.settings import FILTERS
    settings_fields = {f.name for f in dataclasses.fields(Settings)}
    score_fields = {f.name for f in dataclasses.fields(quality.Scores)}
    assert {f.name for f in quality.TABLE} | {"duplicate"} == set(FILTERS)
    # The order docs/ingest.md gives: a window failing several filters gets the first one's code.
    assert [f.name for f in quality.TABLE] == ["dark", "bright", "flat", "static", "fast", "blur", "text"]
    for f in quality.TABLE:
        assert f.setting in settings_fields and f.score in score_fields, f.name
        assert f.setting.startswith("min_" if f.below else "max_"), f.name
        assert reasons.FILTER_CODES[f.name] is f.code and reasons.filter_of(f.code) == f.name
        assert f.code.kind == reasons.DROP and f.setting in f.code.fix and f.setting in f.code.meaning


def test_verdict_drops_on_the_first_enabled_filter_and_flags_the_disabled_ones():
    s = quality.Scores(motion=5.0, sharpness=3.0, brightness=10.0, contrast=-1.0, text=0.5)
    fails = quality.failures(s, Settings())  # contrast -1: not measured, never fails
    assert [name for name, _ in fails] == ["dark", "blur", "text"]
    assert fails[0][1] == ('dark: brightness 10 < min_brightness 25; the clip is too dark (to keep such '
                           'clips change min_brightness or remove "dark" from filters)')
    code, reason, flags = quality.verdict(s, Settings(filters=("blur", "text")))
    assert code == "filter_blur" and flags == ["dark: brightness 10 < min_brightness 25"]
    assert reason.startswith("dropped by quality filter blur: sharpness 3 < min_sharpness 15; ")
    assert " / text: text area 0.5 > max_text 0.02; " in reason
    assert quality.verdict(quality.Scores(), Settings()) == ("", "", [])


def test_reason_codes_are_strings_a_manifest_stores_and_reads_back(tmp_path):
    from wandata.dataset import reasons
    from wandata.dataset.reasons import Reason
    from wandata.dataset.records import ClipRecord, SourceRecord
    for r in Reason:
        assert r.name == r.value == str(r) == f"{r}" and r.label and r.fix and r.meaning
        assert reasons.CODES[r.value] is r and Reason.of(r.value) is r
        assert r.is_failure == reasons.is_failure(r.value) == (r.kind == reasons.FAILURE)
        assert r.applies in ("source", "clip", "source, clip")
    doc = (Path(__file__).resolve().parent.parent / "docs" / "ingest.md").read_text()
    for r in Reason:  # the docs table says what the code says
        assert f"| `{r}` | {r.kind} | {r.applies} | {r.meaning} | {r.fix} |" in doc, r
    assert Reason.of("") is None and Reason.of("from_a_later_version") is None
    assert reasons.is_failure("from_a_later_version") and reasons.label("from_a_later_version") == "from a later version"
    src = SourceRecord(path="a.mp4")
    src.set("dropped", Reason.too_short, Reason.too_short.message(duration_s=0.3, minimum=0.5))
    clip = ClipRecord("c1", "id", "a.mp4", 0, -1, 0.0, 0.3)
    clip.set("dropped", Reason.shot_too_short, "shot is 0.30 s long")
    m = Manifest(tmp_path)
    m.put(src, [clip])
    m.save()
    back = Manifest(tmp_path)
    (s2,), (c2,) = back.sources.values(), back.all_clips()
    assert (s2.reason_code, c2.reason_code) == ("too_short", "shot_too_short")
    assert s2.reason_code == Reason.too_short and type(s2.reason_code) is str
    assert s2.reason == "only 0.30 s long (minimum 0.5 s); too short to cut a clip from"


def test_report_groups_rows_by_reason_code_never_by_message(tmp_path):
    import re

    from wandata.dataset.records import ClipRecord, SourceRecord
    from wandata.report.html import build
    m = Manifest(tmp_path)
    clips = [ClipRecord(f"c{i}", "id", "a.mp4", 0, i, 0.0, 3.0) for i in range(4)]
    clips[0].set("dropped", "filter_blur", "shot is blurred")  # the message misleads; the code rules
    clips[1].set("dropped", "filter_blur", "anything")
    clips[2].set("failed", "disk_full", "dropped by quality filter dark: ...")
    clips[3].set("dropped", "", "dropped by quality filter dark: an older manifest")
    m.put(SourceRecord(path="a.mp4"), clips)
    m.save()
    page = build(tmp_path)
    assert re.findall(r"<h3>(.*?)</h3>", page) == [
        "dropped: quality: blur (2)", "failed: disk full (1)", "dropped: no reason code (an older manifest) (1)"]
    assert "dropped by quality filter dark: an older manifest" in page  # its reason is still listed


def _rows(clips):
    return sorted((Path(c.source_path).name, c.clip_id, c.status, c.path, c.reason) for c in clips)


def test_plan_matches_what_ingest_wrote_clip_for_clip(planted):
    from wandata.ingest.run import make_plan
    out, by_name = planted
    raw = Path(next(iter(by_name.values()))[0].path).parent
    plan = make_plan([raw], out, Settings(frames=17, buckets=SMALL, detector="none"))
    assert _rows(plan.clips) == _rows(Manifest(out).all_clips())
    t = plan.totals()
    assert t["clips"] == {"kept": 2, "dropped": 5}
    assert t["dropped_by"] == {"static": 1, "blur": 1, "dark": 1, "text": 1, "duplicate": 1}
    by_n = {m["frames"]: m for m in plan.material()}
    assert by_n[81]["windows"] == 0 and by_n[17]["windows"] == 7  # every 2 s source holds one 17


def test_plan_json_on_the_sample_data_matches_ingest(sample_dataset_ro):
    import json

    from click.testing import CliRunner

    from wandata.cli import main

    from .conftest import SAMPLE
    before = sorted((p, p.stat().st_mtime_ns) for p in sample_dataset_ro.rglob("*"))
    result = CliRunner().invoke(main, ["plan", str(SAMPLE), "-o", str(sample_dataset_ro), "--json"])
    assert result.exit_code == 0, result.output
    planned = json.loads(result.stdout)
    got = sorted((c["clip_id"], c["status"], c["path"]) for s in planned["sources"] for c in s["clips"])
    want = sorted((c.clip_id, c.status, c.path) for c in Manifest(sample_dataset_ro).all_clips())
    assert got == want and any(s == "kept" for _, s, _ in got)
    assert [m["frames"] for m in planned["material"]] == [81, 65, 49, 33, 17]
    assert sorted((p, p.stat().st_mtime_ns) for p in sample_dataset_ro.rglob("*")) == before


def test_report_opens_in_headless_chromium_shows_every_kept_clip_and_escapes(sample_dataset, tmp_path):
    import re
    import shutil
    import subprocess

    from wandata.report.html import write
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        assert not os.environ.get("CI"), ".ci/run installs chromium; it must be there in CI"
        pytest.skip("chromium is not installed (apt-get install chromium)")
    m = Manifest(sample_dataset)
    hostile = '<script>document.title="pwned"</script><b onmouseover=alert(1)>"café" & 日本'
    kept = [c for c in m.all_clips() if c.status == "kept"]
    kept[0].caption = hostile
    m.save()
    page = write(sample_dataset, tmp_path / "report.html")
    text = page.read_text(encoding="utf-8")
    assert "<script" not in text and "http://" not in text.replace("http://www.w3.org/2000/svg", "")
    assert "&lt;script&gt;" in text
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert len(re.findall(r'<div class="clip">', dom)) == len(kept)
    assert "<script" not in dom and "pwned" not in re.search(r"<title>(.*?)</title>", dom).group(1)
    # one strip of three frames per clip, a JPEG file in the report's own folder (paged report)
    srcs = re.findall(r'<img src="([^"]+)"', dom)
    assert len(srcs) == len(kept) and all(s.startswith("report_files/thumbs/") for s in srcs)
    assert all((tmp_path / s).is_file() for s in srcs)
