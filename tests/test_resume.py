"""An interrupted run (kill -9 or Ctrl-C) resumes to the same manifest and clips."""
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wandata.dataset.manifest import Manifest, read_table
from wandata.media.tools import ffmpeg_exe
from wandata.ingest.source import slug
from wandata.media.probe import content_hash

from .media import dataset_state, small_sources

ARGS = ["--frames", "33", "--bucket", "416x240", "--detector", "adaptive", "--min-source-scale", "0.5",
        "--preset", "veryfast", "--quiet"]


def _sigint_default():
    # A test runner started in the background (nohup, `cmd &` without job control) has SIGINT
    # ignored, and children inherit that: put back the default so the child can be interrupted.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="module")

def raw(tmp_path_factory):
    return small_sources(tmp_path_factory.mktemp("raw"), [130, 110])


def _cmd(raw, out):
    return [sys.executable, "-m", "wandata.cli", "ingest", str(raw), "-o", str(out), *ARGS]


@pytest.fixture(scope="module")
def reference_run(raw, tmp_path_factory):
    """An uninterrupted run: its dataset folder and how long it took."""
    out = tmp_path_factory.mktemp("ref") / "ds"
    t = time.monotonic()
    subprocess.run(_cmd(raw, out), check=True, capture_output=True)
    return out, time.monotonic() - t


@pytest.fixture(scope="module")
def reference(reference_run):
    return dataset_state(reference_run[0])


def _interrupt_mid_clip(raw, out, sig):
    proc = subprocess.Popen(_cmd(raw, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=_sigint_default)
    deadline = time.time() + 120
    # Wait until the second source is being written: one source done, a clip half-written.
    while time.time() < deadline:
        done = (out / "manifest.parquet").exists()
        if done and list((out / "clips").rglob("*.part")):
            break
        time.sleep(0.02)
    else:
        proc.kill()
        pytest.fail("the run never reached the middle of its second source")
    proc.send_signal(sig)
    proc.wait(timeout=60)
    return proc.returncode


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_interrupted_run_resumes_to_the_same_result(raw, reference, tmp_path, sig):
    out = tmp_path / "ds"
    rc = _interrupt_mid_clip(raw, out, sig)
    assert rc != 0
    rows_before = read_table(out).to_pylist()
    assert 1 <= sum(r["kind"] == "source" for r in rows_before) < 3  # really interrupted mid-run
    resumed = subprocess.run(_cmd(raw, out), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    rows, files = dataset_state(out)
    ref_rows, ref_files = reference
    assert files == ref_files                # no duplicates, no half-written clips
    assert not list(out.rglob("*.part"))
    assert len(rows) == len(ref_rows)
    for a, b in zip(rows, ref_rows):
        assert a == b                        # same plan, same decoded pictures (decoded_digest)


def test_json_summary_of_a_rerun_reports_skipped_sources(raw, tmp_path):
    out = tmp_path / "ds"
    subprocess.run(_cmd(raw, out), check=True, capture_output=True)
    again = subprocess.run([*_cmd(raw, out), "--json"], capture_output=True, text=True, check=True)
    s = json.loads(again.stdout)
    assert s["skipped"] == 3 and s["processed"] == 0 and s["clips"]["kept"] >= 3


def _file_hashes(out: Path) -> dict[str, str]:
    return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((out / "clips").rglob("*")) if p.is_file()}


def _assert_same_as_reference(out: Path, reference_run) -> None:
    ref_out = reference_run[0]
    assert dataset_state(out) == dataset_state(ref_out)   # rows minus timings, decoded digests
    assert _file_hashes(out) == _file_hashes(ref_out)     # and the clips byte for byte
    assert not list(out.rglob("*.part")) and not list(out.glob(".manifest.parquet.*"))


def _clip_folder(raw: Path, name: str) -> str:
    """The folder ingest writes the clips of ``raw/name`` into (clips/<slug>-<id>)."""
    return f"{slug(Path(name).stem)}-{content_hash(raw / name)[:8]}"


def test_kill_9_at_random_points_then_resume_equals_an_uninterrupted_run(raw, reference_run, tmp_path):
    """SIGKILL at 10 or more random instants of a three-source ingest (from start-up to the
    last manifest write); each next run resumes what the killed one left. A run that ends before
    its kill must already equal the reference, and the next one starts from an empty folder."""
    rng = random.Random(20240611)
    budget = reference_run[1]
    out = tmp_path / "ds"
    kills, finished = [], 0
    for _ in range(40):
        if len(kills) >= 10:
            break
        proc = subprocess.Popen(_cmd(raw, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        delay = rng.uniform(0.0, budget)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.kill()  # SIGKILL: no handler runs, nothing is cleaned up
            proc.wait(timeout=60)
            sources = len(Manifest(out).sources) if (out / "manifest.parquet").exists() else 0
            parts = len(list(out.rglob("*.part")))
            kills.append((round(delay, 2), sources, parts))
            continue
        assert proc.returncode == 0, proc.stderr.read().decode()
        _assert_same_as_reference(out, reference_run)
        finished += 1
        shutil.rmtree(out)
    assert len(kills) >= 10, kills
    # Some kills really landed between sources or in the middle of one, not only at start-up.
    assert any(0 < sources < 3 or parts for _, sources, parts in kills), kills
    resumed = subprocess.run(_cmd(raw, out), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_as_reference(out, reference_run)


def _json_run(raw, out, env=None):
    proc = subprocess.run([*_cmd(raw, out), "--json"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})
    return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else proc.stderr


def _by_name(out):
    m = Manifest(out)
    return {Path(p).name: (s, m.clips[p]) for p, s in m.sources.items()}


def test_a_source_whose_clips_could_not_be_written_fails_as_such_and_is_retried(raw, reference_run, tmp_path):
    """A plain file where src1's clip folder belongs: its clips cannot be written. The source is
    failed with encode_failed (not "no shot is long enough", not an unexpected error); once the
    obstacle is gone the next run retries exactly that source and ends as a clean run."""
    out = tmp_path / "ds"
    blocker = out / "clips" / _clip_folder(raw, "src1.mp4")
    blocker.parent.mkdir(parents=True)
    blocker.write_text("in the way")
    rc, s = _json_run(raw, out)
    assert rc == 3, s
    by = _by_name(out)
    src, clips = by["src1.mp4"]
    assert (src.status, src.reason_code) == ("failed", "encode_failed"), src.reason
    assert "no shot is long enough" not in src.reason and str(blocker) in src.reason
    assert clips and {(c.status, c.reason_code) for c in clips} == {("failed", "encode_failed")}
    assert all(by[n][0].status == "kept" for n in ("src0.mp4", "src2.mp4"))
    assert s["retried"] == 0 and s["sources"]["failed"] == 1

    blocker.unlink()
    rc, s = _json_run(raw, out)
    assert rc == 0, s
    assert (s["retried"], s["processed"], s["skipped"]) == (1, 1, 2)
    _assert_same_as_reference(out, reference_run)
    rc, s = _json_run(raw, out)  # done now: nothing left to retry
    assert (rc, s["retried"], s["processed"], s["skipped"]) == (0, 0, 0, 3)


def test_a_full_disk_is_recorded_as_disk_full_and_retried(raw, reference_run, tmp_path):
    """The real ffmpeg, writing src2's clips to /dev/full (every write fails with ENOSPC): the
    source is failed with disk_full; the next run, with space again, retries it and ends as a
    clean run. The old code called this source "no shot is long enough" and never retried it."""
    marker = _clip_folder(raw, "src2.mp4")
    wrapper = tmp_path / "ffmpeg_full_disk"
    wrapper.write_text(
        f"#!{sys.executable}\n"
        "import os, sys\n"
        "args = sys.argv[1:]\n"
        f"if {marker!r} in args[-1]:\n"
        "    args[-1] = '/dev/full'\n"
        f"os.execv({ffmpeg_exe()!r}, [{ffmpeg_exe()!r}, *args])\n")
    wrapper.chmod(0o755)
    out = tmp_path / "ds"
    rc, s = _json_run(raw, out, {"WANDATA_FFMPEG": str(wrapper)})
    assert rc == 3, s
    src, clips = _by_name(out)["src2.mp4"]
    assert (src.status, src.reason_code) == ("failed", "disk_full"), src.reason
    assert clips and {(c.status, c.reason_code) for c in clips} == {("failed", "disk_full")}
    assert not [p for p in (out / "clips").rglob("*") if marker in str(p) and p.is_file()]
    assert [p["code"] for p in s["problems"] if p["file"] == src.path] == ["disk_full"]

    text = subprocess.run(_cmd(raw, out), capture_output=True, text=True, timeout=300)
    assert text.returncode == 0, text.stderr
    assert "1 processed, 1 retried after a failure, 2 already done" in text.stdout
    _assert_same_as_reference(out, reference_run)


def test_a_run_stopped_before_the_duplicate_pass_drops_the_duplicates_on_resume(tmp_path, monkeypatch):
    """The near-duplicate pass runs once every source is recorded. A run stopped right there (the
    last manifest write done, the pass not) left nothing to process, and the rerun used to skip
    the pass too: the copy stayed kept. The stop is raised where the pass starts, the one instant
    a kill -9 cannot be aimed at from outside."""
    from wandata import quality
    from tools import synth
    from wandata.settings import Settings
    from wandata.ingest.run import ingest

    raw = tmp_path / "raw"
    raw.mkdir()
    shots = synth.make_shots([80], photos=["rocket"], seed=1)
    synth.write_video(raw / "a.mp4", shots, None, 640, 368, 25, crf=20)
    synth.write_video(raw / "b.mp4", shots, None, 640, 368, 25, crf=28)  # same picture, other bytes
    settings = Settings(frames=33, buckets=((416, 240),), detector="none", min_source_scale=0.5,
                        preset="veryfast")
    ingest([raw], tmp_path / "ref", settings, progress=False)
    ref = dataset_state(tmp_path / "ref")
    assert sorted((r["status"], r["reason_code"]) for r in ref[0] if r["kind"] == "clip") == [
        ("dropped", "near_duplicate"), ("kept", "")]

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(quality, "drop_duplicates", stopped)
    with pytest.raises(KeyboardInterrupt):
        ingest([raw], tmp_path / "ds", settings, progress=False)
    monkeypatch.undo()
    assert len(Manifest(tmp_path / "ds").sources) == 2
    summary = ingest([raw], tmp_path / "ds", settings, progress=False)
    assert (summary.processed, summary.skipped) == (0, 2)
    assert dataset_state(tmp_path / "ds") == ref
