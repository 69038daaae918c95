"""End to end: raw video in, clips checked by decoding them."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from tools import synth
from wandata.media.bucket import fit
from wandata.settings import Settings
from wandata.dataset.manifest import Manifest
from wandata.ingest.run import ingest
from wandata.media.decode import EPS_FRACTION

from .conftest import SAMPLE
from .media import decode, read_barcode, write_barcode_video

SMALL = ((416, 240), (240, 416))


def kept(dataset: Path):
    return [c for c in Manifest(dataset).all_clips() if c.status == "kept"]


def test_every_sample_clip_is_exactly_n_frames_at_16fps_and_bucket_size(sample_dataset_ro):
    clips = kept(sample_dataset_ro)
    assert len(clips) >= 7
    sizes = set()
    for c in clips:
        frames, rate = decode(sample_dataset_ro / c.path)
        assert len(frames) == 81, c.path
        assert rate == pytest.approx(16.0)
        h, w, _ = frames[0].shape
        assert (w, h) == (c.width, c.height) and f"{w}x{h}" == c.bucket
        sizes.add((w, h))
    assert sizes == {(832, 480), (480, 832)}  # the phone video came out portrait


def test_sample_summary_accounts_for_every_source(sample_dataset_ro):
    m = Manifest(sample_dataset_ro)
    by_name = {Path(p).name: s for p, s in m.sources.items()}
    assert set(by_name) == {"montage_24fps.mp4", "phone_portrait.mp4", "stock_30fps.mp4", "too_short.mp4"}
    assert by_name["too_short.mp4"].status == "dropped"
    short = m.clips[by_name["too_short.mp4"].path]
    assert short and all("5.06 s" in c.reason for c in short)
    assert by_name["phone_portrait.mp4"].rotation == 90
    assert (by_name["phone_portrait.mp4"].display_width, by_name["phone_portrait.mp4"].display_height) == (720, 1280)


def test_no_kept_clip_straddles_a_cut_or_a_dissolve(sample_dataset_ro):
    truth = json.loads((SAMPLE / "ground_truth.json").read_text())
    m = Manifest(sample_dataset_ro)
    checked = 0
    for path, src in m.sources.items():
        gt = truth[Path(path).name]
        for c in m.clips[path]:
            if c.status != "kept":
                continue
            lo, hi = min(c.src_frames), max(c.src_frames)
            inside = [s for s in gt["shots"] if s[0] <= lo and hi <= s[1]]
            assert inside, f"{c.path}: source frames {lo}..{hi} cross a boundary of {gt['shots']}"
            for d0, d1 in gt["dissolves"]:
                assert hi < d0 or lo > d1, f"{c.path} overlaps the dissolve {d0}..{d1}"
            checked += 1
    # the montage has 5 shots of 6.5 s, each long enough for exactly one clip
    montage = [c for c in kept(sample_dataset_ro) if "montage" in c.path]
    assert len(montage) == 5 and checked >= 7


def _expected(shots, transitions, index, disp_w, disp_h, bucket_fit):
    img = synth.timeline_frame(shots, transitions, index, disp_w, disp_h)
    img = cv2.resize(img, (bucket_fit.scaled_w, bucket_fit.scaled_h), interpolation=cv2.INTER_AREA)
    return img[bucket_fit.crop_y:bucket_fit.crop_y + bucket_fit.height,
               bucket_fit.crop_x:bucket_fit.crop_x + bucket_fit.width]


@pytest.mark.parametrize("rotation", [0, 90, 270])
def test_clip_pixels_are_the_planned_source_frames_upright(tmp_path, rotation):
    shots = synth.make_shots([80, 75], photos=["astronaut", "coffee"], seed=7)
    transitions = [synth.dissolve(10)]
    raw = tmp_path / "raw"
    raw.mkdir()
    gt = synth.write_video(raw / "cam.mp4", shots, transitions, 640, 368, 24, crf=16, rotation=rotation)
    out = tmp_path / "ds"
    ingest([raw], out, Settings(frames=33, buckets=SMALL, detector="transnetv2", min_source_scale=0.5),
           progress=False)
    clips = kept(out)
    assert len(clips) == 2
    dw, dh = gt["display_width"], gt["display_height"]
    f = fit(dw, dh, SMALL)
    assert (f.width > f.height) == (dw > dh)
    for c in clips:
        frames, _ = decode(out / c.path)
        assert len(frames) == 33
        for i in (0, 16, 32):
            want = _expected(shots, transitions, c.src_frames[i], dw, dh, f).astype(np.float32)
            got = frames[i].astype(np.float32)
            assert got.shape == want.shape
            err = np.abs(got - want).mean()
            flipped = np.abs(got - want[::-1, ::-1]).mean()
            assert err < 8, f"{c.path} frame {i}: mean error {err:.1f}"
            assert flipped > 2 * err  # orientation is really right, not just a blur match
        for d0, d1 in gt["dissolves"]:
            assert max(c.src_frames) < d0 or min(c.src_frames) > d1


@pytest.mark.parametrize("kind", ["ntsc", "vfr"])
def test_each_output_frame_shows_the_source_frame_the_rule_picks(tmp_path, kind):
    raw = tmp_path / "raw"
    raw.mkdir()
    if kind == "ntsc":
        pts = write_barcode_video(raw / "count.mp4", 200, 640, 368, "30000/1001")
    else:  # 2 s at 12 fps, then 3 s at 30 fps, then 2 s at 20 fps
        pts = [i / 12 for i in range(24)] + [2 + i / 30 for i in range(90)] + [5 + i / 20 for i in range(40)]
        write_barcode_video(raw / "count.mp4", len(pts), 640, 368, pts_s=pts)
    out = tmp_path / "ds"
    ingest([raw], out, Settings(frames=49, buckets=SMALL, detector="none", min_source_scale=0.5,
                                mode="chunk"), progress=False)
    src = next(iter(Manifest(out).sources.values()))
    assert src.vfr == (kind == "vfr")
    clips = kept(out)
    assert clips
    f = fit(640, 368, SMALL)
    times = np.asarray(pts)
    for c in clips:
        frames, rate = decode(out / c.path)
        assert len(frames) == 49 and rate == pytest.approx(16)
        shown = [read_barcode(fr, f.scale, f.crop_x, f.crop_y) for fr in frames]
        assert shown == c.src_frames
        for i, idx in enumerate(shown):  # sample and hold: latest source frame at or before t
            t = c.start_s + i / 16 + EPS_FRACTION / 16  # the rule's documented tolerance
            assert times[idx] <= t
            assert idx == len(times) - 1 or times[idx + 1] > t


def test_rerun_skips_finished_sources(sample_dataset):
    before = {c.path: (sample_dataset / c.path).stat().st_mtime_ns for c in kept(sample_dataset)}
    summary = ingest([SAMPLE], sample_dataset, Settings(), progress=False)
    assert summary.processed == 0 and summary.skipped == 4
    after = {c.path: (sample_dataset / c.path).stat().st_mtime_ns for c in kept(sample_dataset)}
    assert before == after


@pytest.mark.parametrize("mode,expected", [("head", 1), ("chunk", 3), ("uniform", 2)])
def test_window_modes_end_to_end(tmp_path, mode, expected):
    raw = tmp_path / "raw"
    raw.mkdir()
    # one 7 s shot: 112 grid frames hold three 33-frame windows back to back
    synth.write_video(raw / "long.mp4", synth.make_shots([175], photos=["coffee"]), None, 640, 368, 25)
    out = tmp_path / "ds"
    ingest([raw], out, Settings(frames=33, buckets=SMALL, detector="none", min_source_scale=0.5,
                                mode=mode, windows_per_shot=2), progress=False)
    clips = kept(out)
    assert len(clips) == expected
    starts = sorted(c.start_s for c in clips)
    assert all(b - a >= 33 / 16 - 1e-9 for a, b in zip(starts, starts[1:]))  # never overlapping
    for c in clips:
        assert len(decode(out / c.path)[0]) == 33


def test_videos_are_found_by_content_not_only_by_extension(tmp_path):
    from wandata.ingest.discover import discover

    raw = tmp_path / "raw"
    (raw / "sub" / ".hidden").mkdir(parents=True)
    synth.write_video(raw / "sub" / "c.mp4", synth.make_shots([20]), None, 320, 192, 25)
    (raw / "sub" / "c.mp4").rename(raw / "sub" / "clip_without_extension")
    synth.write_video(raw / "sub" / ".hidden" / "skipped.mp4", synth.make_shots([20]), None, 320, 192, 25)
    (raw / "notes.txt").write_text("hello")
    (raw / "broken.mov").write_bytes(b"not really a movie")
    names = [p.name for p in discover([raw])]
    assert names == ["broken.mov", "clip_without_extension"]


def test_config_show_prints_every_default_and_reads_a_toml_file(tmp_path):
    from click.testing import CliRunner

    from wandata.cli import main

    out = CliRunner().invoke(main, ["config", "show"])
    assert out.exit_code == 0
    shown = json.loads(out.output)
    assert shown["frames"] == 81 and shown["fps"] == 16.0 and shown["buckets"] == ["832x480", "480x832"]
    toml = CliRunner().invoke(main, ["config", "show", "--toml"]).output
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml.replace("frames = 81", "frames = 49"))
    again = json.loads(CliRunner().invoke(main, ["config", "show", "--config", str(cfg)]).output)
    assert again["frames"] == 49
    bad = CliRunner().invoke(main, ["ingest", str(tmp_path), "--frames", "80"])
    assert bad.exit_code == 2 and "4k+1" in bad.output


def test_ingest_dry_run_is_the_plan_and_writes_nothing(tmp_path):
    from click.testing import CliRunner

    from wandata.cli import main

    raw = tmp_path / "raw"
    raw.mkdir()
    synth.write_video(raw / "a.mp4", synth.make_shots([100, 60], photos=["rocket", "coins"]), None, 640, 368, 25)
    args = [str(raw), "-o", str(tmp_path / "ds"), "--frames", "33", "--bucket", "416x240",
            "--detector", "adaptive", "--min-source-scale", "0.5", "--json"]
    dry = CliRunner().invoke(main, ["ingest", "--dry-run", *args])
    plan = CliRunner().invoke(main, ["plan", *args])
    assert dry.exit_code == 0 and plan.exit_code == 0
    assert json.loads(dry.output)["totals"] == json.loads(plan.output)["totals"]
    assert json.loads(dry.output)["totals"]["clips"].get("kept", 0) >= 1
    assert not (tmp_path / "ds" / "clips").exists() and not (tmp_path / "ds" / "manifest.parquet").exists()


def test_every_reason_code_is_in_the_docs_table_with_its_kind():
    from wandata.dataset import reasons

    doc = (Path(__file__).resolve().parent.parent / "docs" / "ingest.md").read_text()
    for c in reasons.CODES.values():
        assert f"| `{c.name}` | {c.kind} |" in doc, c.name
    from wandata.settings import FILTERS
    assert set(reasons.FILTER_CODES) == set(FILTERS)  # every filter has its code


def test_old_manifest_without_reason_codes_loads_and_its_failures_are_retried(tmp_path):
    """A manifest written before the reason_code column: it loads (codes empty), and what the
    retry rule needs, the status, is there: failed sources and sources with a failed clip are
    not done; kept and dropped ones are."""
    import pyarrow.parquet as pq

    from wandata.dataset.records import ClipRecord, SourceRecord

    m = Manifest(tmp_path)
    fp = Settings().fingerprint()
    for name, status in [("kept", "kept"), ("dropped", "dropped"), ("failed", "failed"), ("clipfail", "kept")]:
        m.put(SourceRecord(path=name, status=status, settings_fingerprint=fp), [])
    m.clips["clipfail"] = [ClipRecord("c1", "id", "clipfail", 0, 0, 0.0, 3.0, status="failed"),
                           ClipRecord("c2", "id", "clipfail", 0, 1, 0.0, 3.0)]
    m.clips["dropped"] = [ClipRecord("c3", "id", "dropped", 0, -1, 0.0, 1.0, status="dropped")]
    m.save()
    table = pq.read_table(m.path)
    pq.write_table(table.drop(["reason_code"]), m.path)

    old = Manifest(tmp_path)
    assert {s.reason_code for s in old.sources.values()} == {""}
    assert {p: old.done(p, fp) for p in old.sources} == {
        "kept": True, "dropped": True, "failed": False, "clipfail": False}
    assert not old.done("kept", "another-fingerprint")
