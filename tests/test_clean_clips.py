"""No kept clip holds a cut, dissolve, fade or dip, and in-shot motion does not cost the shot its clips.

One generated video (photographs panned and zoomed, 30 fps, tools/synth.py) joins its shots with
dissolves of 10 to 150 frames, a fade to black and back, a dip to white and hard cuts, and holds a
whip pan and a flash inside shots just long enough for one clip each, so a detector that cuts
there loses the clip. Every detector ingests it through the real CLI; the clips are decoded and
each frame is matched against the synthetic timeline frame its manifest row names.

Quality filters are off (--filters ""): a dip to white is "bright" and a whip pan "fast", and a
filter that drops a dirty clip would hide what the detector let through.
"""
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tools import synth
from wandata.dataset.manifest import Manifest
from wandata.media.bucket import fit

from .media import decode

W, H, FPS, FRAMES = 416, 240, 30, 17
BUCKETS = ((416, 240), (240, 416))
PHOTOS, TRANSITIONS, NAMES = synth.SUITE_PHOTOS, synth.SUITE_TRANSITIONS, synth.SUITE_NAMES
DETECTORS = ["cascade", "transnetv2", "adaptive"]
MAX_ERROR = 8.0  # mean |decoded - expected| per channel: x264 at crf 16 then 18 on these pans
_timeline = synth.transition_suite


@pytest.fixture(scope="module")
def footage(tmp_path_factory):
    raw = tmp_path_factory.mktemp("clean_raw")
    shots = _timeline()
    truth = synth.write_video(raw / "transitions.mp4", shots, TRANSITIONS, W, H, FPS, crf=16)
    assert [t[2] for t in truth["transitions"]] == ["dissolve"] * 5 + ["fade"] * 2 + ["cut"] * 3
    assert [e[2] for e in truth["events"]] == ["whip", "flash"]
    return raw / "transitions.mp4", shots, truth


@pytest.fixture(scope="module", params=DETECTORS)
def ingested(request, footage, tmp_path_factory):
    src, shots, truth = footage
    out = tmp_path_factory.mktemp(f"clean_{request.param}")
    cmd = [sys.executable, "-m", "wandata", "ingest", str(src), "-d", str(out), "--json",
           "--detector", request.param, "--frames", str(FRAMES), "--filters", "",
           "--preset", "ultrafast"]
    for w, h in BUCKETS:
        cmd += ["--bucket", f"{w}x{h}"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                       cwd=Path(__file__).resolve().parent.parent)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    clips = [c for c in Manifest(out).all_clips() if c.status == "kept"]
    return request.param, out, clips, shots, truth



def _dirty(src_frames, truth):
    """The transitions that a clip showing these source frames holds a frame of."""
    lo, hi = min(src_frames), max(src_frames)
    hits = []
    for name, (first, last, kind) in zip(NAMES, truth["transitions"]):
        if kind == "cut":
            if lo < last <= hi:  # both sides of the cut, whether or not the grid shows them
                hits.append(f"{name} at {last}")
        elif lo <= last and first <= hi:
            shown = sum(first <= s <= last for s in src_frames)
            hits.append(f"{name} {first}..{last} ({shown} frames shown, clip {lo}..{hi})")
    return hits


def test_no_kept_clip_holds_a_frame_of_any_transition(ingested):
    detector, _, clips, _, truth = ingested
    bad = {c.path: _dirty(c.src_frames, truth) for c in clips}
    bad = {k: v for k, v in bad.items() if v}
    assert not bad, f"{detector}: {len(bad)} of {len(clips)} kept clips hold transition frames: {bad}"


def test_kept_clips_show_the_source_frames_they_name(ingested):
    """Decoded frame i of every clip is timeline frame src_frames[i]: the mapping the other tests
    trust is what the file shows, so no transition frame hides behind a clean frame number."""
    detector, out, clips, shots, truth = ingested
    f = fit(W, H, BUCKETS)
    cache = {}

    def expected(index):
        if index not in cache:
            img = synth.timeline_frame(shots, TRANSITIONS, index, W, H)
            img = cv2.resize(img, (f.scaled_w, f.scaled_h), interpolation=cv2.INTER_AREA)
            cache[index] = img[f.crop_y:f.crop_y + f.height, f.crop_x:f.crop_x + f.width].astype(np.float32)
        return cache[index]

    assert clips, f"{detector} kept no clip at all"
    for c in clips:
        frames, rate = decode(out / c.path)
        assert len(frames) == FRAMES == len(c.src_frames) and rate == pytest.approx(16)
        for i, (got, index) in enumerate(zip(frames, c.src_frames)):
            err = np.abs(got.astype(np.float32) - expected(index)).mean()
            assert err < MAX_ERROR, f"{detector} {c.path} frame {i} (source {index}): mean error {err:.1f}"


@pytest.mark.parametrize("event", ["whip", "flash"])
def test_a_shot_with_a_whip_pan_or_a_flash_keeps_its_clip(ingested, event):
    detector, _, clips, _, truth = ingested
    (first, last, _), = [e for e in truth["events"] if e[2] == event]
    lo, hi = next(s for s in truth["shots"] if s[0] <= first and last <= s[1])
    inside = [c for c in clips if lo <= min(c.src_frames) and max(c.src_frames) <= hi]
    assert inside, (f"{detector}: no kept clip in the {event} shot (source {lo}..{hi}, {event} "
                    f"{first}..{last}); clips: {sorted((min(c.src_frames), max(c.src_frames)) for c in clips)}")
    # The halves around the event are too short for a clip, so a kept one shows the event.
    assert any(set(c.src_frames) & set(range(first, last + 1)) for c in inside)


def test_the_timeline_marks_exactly_the_transition_frames():
    """The truth the other tests trust: frames next to a span are pure, frames inside are not; the
    fade holds black, the dip reaches white, the flash brightens its shot, the whip moves fast."""
    shots = _timeline()
    plan, _, _, ranges, spans, events = synth._plan(shots, TRANSITIONS)
    pure = {i for a, b in ranges for i in range(a, b + 1)}
    assert pure.isdisjoint(i for a, b, k in spans if k != "cut" for i in range(a, b + 1))
    assert len(pure) + sum(b - a + 1 for a, b, k in spans if k != "cut") == len(plan)
    for a, b, kind in spans:
        assert (a - 1 in pure and b + 1 in pure) if kind != "cut" else (a in pure and b in pure)

    def frame(i):
        return synth.timeline_frame(shots, TRANSITIONS, i, W, H).astype(np.float32)

    (fa, fb, _), (da, db, _) = [s for s in spans if s[2] == "fade"]
    assert [frame(i).max() for i in (fa + 30, fa + 37)] == [0, 0]  # held black
    assert frame(da + 14).mean() > 240 and frame(da + 15).mean() > 240  # the dip's whitest frames
    (wa, wb, _), (la, lb, _) = events
    assert frame(la + 1).mean() > frame(la - 1).mean() + 100
    step = [np.abs(frame(i + 1) - frame(i)).mean() for i in (wa - 2, wa + 2)]
    assert step[1] > 5 * step[0]
