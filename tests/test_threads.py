"""--threads: one budget for every library's threads in the process that runs a source.

Checked on what the run leaves, not on what it says: x264 writes its own settings, ``threads=N``
included, into every clip it encodes, and the clips are the same windows either way.
"""
from __future__ import annotations

import re
from pathlib import Path

import av

from wandata.dataset.manifest import Manifest
from wandata.ingest.run import ingest
from wandata.media import threads
from wandata.settings import Settings

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data"


def _x264_threads(path: Path) -> int:
    m = re.search(rb"x264 - core \d+.*? threads=(\d+) ", path.read_bytes(), re.S)
    assert m, f"no x264 settings in {path}"
    return int(m.group(1))


def _clips(ds: Path) -> dict:
    return {c.clip_id: c for c in Manifest.reader(ds).all_clips() if c.status == "kept"}


def test_threads_budget_reaches_the_encoder_and_decoders(tmp_path, sample_dataset_ro):
    src = next(p for p in sorted(SAMPLE.iterdir()) if p.suffix == ".mp4")
    ds = tmp_path / "one"
    ingest([src], ds, Settings(threads=1, workers=1), progress=False)
    one = _clips(ds)
    assert one, "the sample source yields clips"
    default = {k: v for k, v in _clips(sample_dataset_ro).items() if k in one}
    assert default.keys() == one.keys()   # the same windows: threads change no decision
    for cid, c in one.items():
        assert _x264_threads(ds / c.path) == 1
        assert _x264_threads(sample_dataset_ro / default[cid].path) != 1   # x264's own default: cores x 1.5
        assert (c.num_frames, c.start_s, c.bucket) == (default[cid].num_frames, default[cid].start_s,
                                                       default[cid].bucket)
        with av.open(str(ds / c.path)) as f:
            assert sum(1 for _ in f.decode(video=0)) == c.num_frames == c.verified_frames
    # the budget is per process and 0 restores every library's default
    import cv2
    threads.set_budget(0)
    before = cv2.getNumThreads()
    threads.set_budget(1)
    assert cv2.getNumThreads() == 1
    threads.set_budget(0)
    assert threads.encoder_args() == [] and threads.budget() == 0 and cv2.getNumThreads() == before
