"""The local engine: a process pool gives the inline result; errors become records, not crashes."""
import sys

import pytest

from tools import synth
from wandata.settings import Settings
from wandata.engine import EngineError, LocalEngine, make_engine
from wandata.dataset.manifest import read_table
from wandata.ingest.run import gpu_wanted, ingest

SETTINGS = Settings(frames=33, buckets=((416, 240),), detector="adaptive", min_source_scale=0.5,
                    preset="veryfast")


def _rows(out):
    rows = read_table(out).to_pylist()
    for r in rows:
        r.pop("timings_json")
        r.pop("settings_json")  # holds `workers`, which differs on purpose
    return sorted(rows, key=lambda r: (r["kind"], r["path"]))


def test_process_pool_matches_inline(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for k, photo in enumerate(["rocket", "coffee"]):
        synth.write_video(raw / f"src{k}.mp4", synth.make_shots([80], photos=[photo], seed=k), None, 640, 368, 25)
    ingest([raw], tmp_path / "inline", SETTINGS, progress=False)
    ingest([raw], tmp_path / "pool", SETTINGS.replace(workers=2), progress=False)
    inline = _rows(tmp_path / "inline")
    assert sum(r["status"] == "kept" and r["kind"] == "clip" for r in inline) >= 2
    assert _rows(tmp_path / "pool") == inline


def _explode(path, on_progress=None):
    raise RuntimeError(f"boom in {path}\nsecond line of a long message")


def test_an_error_in_the_job_becomes_that_source_s_result():
    got = list(LocalEngine().results(_explode, lambda p, e: (p, str(e)), ["a", "b"]))
    assert got == [("a", "boom in a\nsecond line of a long message"), ("b", "boom in b\nsecond line of a long message")]


def test_engine_choice_errors_say_what_to_do(monkeypatch):
    with pytest.raises(EngineError, match="only applies to --engine ray"):
        make_engine("local", ray_address="auto")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(EngineError, match=r"pip install 'wandata\[ray\]'"):
        make_engine("ray")


@pytest.mark.parametrize("detector, device, want", [
    ("adaptive", "cuda", False), ("none", "auto", False), ("cascade", "auto", None),
    ("auto", "auto", None), ("transnetv2", "cuda", True), ("auto", "cuda:1", True), ("cascade", "cpu", False)])
def test_gpu_need_follows_the_detector_and_device(detector, device, want):
    assert gpu_wanted(Settings(detector=detector, device=device)) is want
