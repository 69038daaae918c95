"""Bad input never crashes a run: each file gets a verdict with a reason a user can act on."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tools import synth
from wandata.dataset.manifest import Manifest

from .conftest import SAMPLE
from .media import decode

FUNNY = "it's a \"café\" clip 日本 $(touch pwned).mp4"


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory):
    raw = tmp_path_factory.mktemp("raw")
    shots = synth.make_shots([100], photos=["rocket"], seed=3)
    good = raw / FUNNY
    synth.write_video(good, shots, None, 640, 368, 25, crf=20, faststart=True)
    synth.write_zero_byte(raw / "empty.mp4")
    synth.write_truncated(good, raw / "truncated.mp4", keep_fraction=0.3)
    synth.write_corrupt(SAMPLE / "stock_30fps.mp4", raw / "corrupt.mp4")
    synth.write_audio_only(raw / "voice.m4a")
    synth.write_not_a_video(raw / "notes.mp4")
    synth.write_vfr_video(raw / "vfr.mp4", synth.make_shots([160], photos=["coffee"], seed=4))
    synth.write_video(raw / "sub_second.mp4", synth.make_shots([8], photos=["chelsea"]), None, 640, 368, 25)
    synth.write_video(raw / "tiny.mp4", synth.make_shots([90], photos=["coins"]), None, 160, 96, 25)
    synth.write_video(raw / "odd.mp4", synth.make_shots([90], photos=["camera"]), None, 641, 369, 25,
                      pix_fmt="yuv444p")
    (raw / "readme.txt").write_text("not a candidate: no video extension, no video bytes")
    out = raw.parent / "dataset"
    cmd = [sys.executable, "-m", "wandata.cli", "ingest", str(raw), "-o", str(out), "--json",
           "--frames", "33", "--bucket", "416x240", "--bucket", "240x416", "--detector", "adaptive",
           "--min-source-scale", "0.5"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=raw.parent)
    return raw, out, proc


def _by_name(out):
    m = Manifest(out)
    return {Path(p).name: (s, m.clips[p]) for p, s in m.sources.items()}


def test_the_run_finishes_and_says_how_many_failed(bad_run):
    raw, out, proc = bad_run
    assert proc.returncode == 3, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["sources"]["failed"] == 4  # empty, truncated, audio-only, not a video
    assert summary["clips"]["kept"] >= 2
    assert not (raw.parent / "pwned").exists() and not (Path.cwd() / "pwned").exists()


@pytest.mark.parametrize("name,status,code,words", [
    ("empty.mp4", "failed", "empty_file", "empty (0 bytes)"),
    # 0.84 s left of 4 s: too little for one 33-frame clip, and the cut is why.
    ("truncated.mp4", "failed", "truncated", "truncated"),
    ("voice.m4a", "failed", "audio_only", "only audio"),
    ("notes.mp4", "failed", "not_a_video", "not a readable video"),
    ("sub_second.mp4", "dropped", "too_short", "too short"),
    ("tiny.mp4", "dropped", "too_small", "upscale"),
])
def test_each_bad_file_has_its_status_and_reason_code(bad_run, name, status, code, words):
    src, clips = _by_name(bad_run[1])[name]
    assert (src.status, src.reason_code) == (status, code), src.reason
    assert words in src.reason
    assert not any(c.status == "kept" for c in clips)


def test_truncated_file_records_its_too_short_shot(bad_run):
    _, clips = _by_name(bad_run[1])["truncated.mp4"]
    assert [(c.status, c.reason_code, c.window_index) for c in clips] == [("dropped", "shot_too_short", -1)]


def test_corrupt_file_keeps_its_readable_part_with_a_warning(bad_run):
    raw, out, _ = bad_run
    src, clips = _by_name(out)["corrupt.mp4"]
    # The damage is in the middle: clips come from before it, and the source says why there are no more.
    assert (src.status, src.reason_code) == ("kept", "decode_error"), src.reason
    assert "damaged" in src.reason
    assert clips and all((c.status, c.reason_code) == ("kept", "") for c in clips)
    for c in clips:
        assert len(decode(out / c.path)[0]) == 33


def test_text_file_is_not_a_candidate(bad_run):
    assert "readme.txt" not in _by_name(bad_run[1])


def test_good_file_with_quotes_spaces_unicode_in_its_name(bad_run):
    raw, out, _ = bad_run
    src, clips = _by_name(out)[FUNNY]
    assert (src.status, src.reason_code, src.reason) == ("kept", "", "")
    good = [c for c in clips if c.status == "kept"]
    assert good and all((c.status, c.reason_code) == ("kept", "") for c in clips)
    frames, rate = decode(out / good[0].path)
    assert len(frames) == 33 and frames[0].shape == (240, 416, 3)


def test_vfr_and_odd_sized_sources_make_exact_clips(bad_run):
    _, out, _ = bad_run
    by = _by_name(out)
    assert by["vfr.mp4"][0].vfr is True
    for name in ("vfr.mp4", "odd.mp4"):
        src, clips = by[name]
        assert (src.status, src.reason_code) == ("kept", ""), src.reason
        good = [c for c in clips if c.status == "kept"]
        assert good and len(good) == len(clips), (name, src.reason, [c.reason for c in clips])
        frames, rate = decode(out / good[0].path)
        assert len(frames) == 33 and rate == pytest.approx(16) and frames[0].shape == (240, 416, 3)


def test_a_clip_that_fails_verification_is_recorded_not_kept(tmp_path, monkeypatch):
    from wandata.ingest import run as pipeline, stream
    from wandata.settings import Settings

    real_check = stream.check

    def short_by_one(path, frames, w, h, fps):  # as if the encoder had dropped a frame
        return real_check(path, frames + 1, w, h, fps)

    monkeypatch.setattr(stream, "check", short_by_one)
    raw = tmp_path / "raw"
    raw.mkdir()
    synth.write_video(raw / "a.mp4", synth.make_shots([100], photos=["rocket"]), None, 640, 368, 25)
    pipeline.ingest([raw], tmp_path / "ds", Settings(frames=33, buckets=((416, 240),),
                                                      detector="none", min_source_scale=0.5), progress=False)
    clips = Manifest(tmp_path / "ds").all_clips()
    assert clips and all((c.status, c.reason_code) == ("failed", "verify_failed") for c in clips)
    assert "33 frames instead of 34" in clips[0].reason
    src = Manifest(tmp_path / "ds").sources[str((raw / "a.mp4").resolve())]
    assert (src.status, src.reason_code) == ("failed", "verify_failed"), src.reason
    assert not any((tmp_path / "ds" / c.path).exists() for c in clips)


def test_a_rerun_retries_each_failed_file_once_and_reaches_the_same_verdicts(bad_run, tmp_path):
    """Failures are retried (the cause may be gone), but a file broken for good just fails
    again, once per run; drops are decisions and stay done."""
    raw, out, proc = bad_run
    copy = tmp_path / "dataset"
    shutil.copytree(out, copy)
    before = {n: (s.status, s.reason_code) for n, (s, _) in _by_name(copy).items()}
    cmd = list(proc.args)
    cmd[cmd.index("-o") + 1] = str(copy)
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=raw.parent, timeout=300)
    assert again.returncode == 3, again.stderr
    s = json.loads(again.stdout)
    assert (s["retried"], s["processed"]) == (4, 4)  # empty, truncated, audio-only, not a video
    assert s["skipped"] == len(before) - 4
    assert {n: (r.status, r.reason_code) for n, (r, _) in _by_name(copy).items()} == before
