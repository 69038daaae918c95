"""The rules without a network (detect/cutrule.py, detect/gradual.py) on small grid frames:
every frame of a dissolve, fade or dip is marked, camera motion and flashes are not, and the
stream gives the whole-array verdict however it is fed."""
import cv2
import numpy as np
import pytest

from tools import synth
from wandata.detect.base import TwoRate, transitions
from wandata.detect.cutrule import _changes, _local_level, classify
from wandata.detect.gradual import GradualRule, TransitionRule

SRC_FPS, GRID_FPS = 30, 16
RENDER = (192, 108)   # rendered a little larger, then scaled down as the pictures are
SMALL = (48, 27)


def _small(img: np.ndarray) -> np.ndarray:
    return cv2.resize(img, SMALL, interpolation=cv2.INTER_AREA)


def _grid(n_src: int) -> np.ndarray:
    """Source frame shown at each 16 fps grid instant (the last one presented by then)."""
    return np.arange(int(n_src * GRID_FPS / SRC_FPS)) * SRC_FPS // GRID_FPS


def _timeline(shots, trans):
    """(small grid frames, source frame of each) of a synth timeline at 30 fps."""
    n = sum(s.frames for s in shots) - sum(t.frames for t in trans)
    src = _grid(n)
    return np.stack([_small(synth.timeline_frame(shots, trans, int(i), *RENDER)) for i in src]), src


def _shot_frames(shot, frames) -> list[np.ndarray]:
    return [synth.render_frame(shot, int(i), *RENDER).astype(np.float32) for i in frames]


def _to_grid(src_frames: list[np.ndarray]):
    src = _grid(len(src_frames))
    return np.stack([_small(np.clip(np.rint(src_frames[i]), 0, 255).astype(np.uint8)) for i in src]), src


def _rules(small) -> np.ndarray:
    return transitions(TransitionRule(), small)


def _assert_covered(mask, src, first, last, what):
    inside = (src >= first) & (src <= last)
    assert inside.any()
    missed = np.flatnonzero(inside & ~mask)
    assert not len(missed), f"{what}: grid frames {missed.tolist()} of the transition are not marked"


@pytest.mark.parametrize("n", [10, 30, 60, 90, 150])
def test_every_frame_of_a_dissolve_is_marked(n):
    shots = synth.make_shots([n + 90, n + 90], ["astronaut", "coffee"], seed=n)
    small, src = _timeline(shots, [synth.dissolve(n)])
    mask = _rules(small)
    _assert_covered(mask, src, n + 90 - n, n + 90 - 1, f"dissolve of {n} frames")
    # ... and both shots keep frames of their own.
    assert not mask[:10].any() and not mask[-10:].any()


def _fade(colour: float, out: int, hold: int, back: int):
    a, b = synth.make_shots([90 + out, 90 + back], ["chelsea", "rocket"], seed=1)
    frames = _shot_frames(a, range(90 + out)) + [None] * hold + _shot_frames(b, range(90 + back))
    for d in range(out):  # the last ``out`` frames of a sink into the colour
        w = (d + 1) / (out + 1)
        frames[90 + d] = (1 - w) * frames[90 + d] + w * colour
    for d in range(hold):
        frames[90 + out + d] = np.full_like(frames[0], colour)
    start = 90 + out + hold
    for d in range(back):
        w = 1 - (d + 1) / (back + 1)
        frames[start + d] = (1 - w) * frames[start + d] + w * colour
    return (*_to_grid(frames), 90, start + back - 1)


@pytest.mark.parametrize("colour, out, hold, back", [(0.0, 30, 8, 30), (255.0, 15, 0, 15), (128.0, 20, 4, 20)],
                         ids=["fade-to-black-and-back", "dip-to-white", "dip-to-grey"])
def test_fades_and_dips_are_marked(colour, out, hold, back):
    small, src, first, last = _fade(colour, out, hold, back)
    mask = _rules(small)
    _assert_covered(mask, src, first, last, "fade")
    assert not mask[:10].any() and not mask[-10:].any()


def _one_shot(photo: str, frames: int, zoom, pan, flash_at: int | None = None):
    shot = synth.Shot(photo, frames, zoom, pan)
    imgs = _shot_frames(shot, range(frames))
    small, src = _to_grid(imgs)
    if flash_at is not None:  # three grid frames washed towards white
        for d, w in enumerate((0.5, 0.85, 0.4)):
            small[flash_at + d] = np.rint((1 - w) * small[flash_at + d] + w * 255).astype(np.uint8)
    return small


@pytest.mark.parametrize("case", ["fast-pan", "whip-pan", "zoom", "flash"])
def test_camera_motion_and_a_flash_inside_one_shot_are_not_transitions(case):
    small = {
        "fast-pan": lambda: _one_shot("coffee", 180, (1.6, 1.6), ((0.0, 0.3), (1.0, 0.7))),
        "whip-pan": lambda: _one_shot("astronaut", 60, (2.0, 2.0), ((0.0, 0.5), (1.0, 0.5))),
        "zoom": lambda: _one_shot("chelsea", 150, (1.0, 3.0), ((0.5, 0.5), (0.5, 0.5))),
        "flash": lambda: _one_shot("rocket", 150, (1.0, 1.2), ((0.2, 0.5), (0.8, 0.5)), flash_at=40),
    }[case]()
    mask = _rules(small)
    assert not mask.any(), f"{case}: grid frames {np.flatnonzero(mask).tolist()} marked inside one shot"


@pytest.fixture(scope="module")
def mixed():
    """A dissolve, a fade through black, a cut and a flash in one stream of grid frames."""
    shots = synth.make_shots([180, 200, 120], ["astronaut", "coffee", "chelsea"], seed=5)
    small, _ = _timeline(shots, [synth.dissolve(90), synth.CUT])
    fade, _, _, _ = _fade(0.0, 20, 4, 20)
    flash = _one_shot("rocket", 100, (1.0, 1.2), ((0.2, 0.5), (0.8, 0.5)), flash_at=20)
    return np.concatenate([small, fade, flash])


@pytest.mark.parametrize("rule", [TransitionRule, GradualRule])
@pytest.mark.parametrize("size", [1, 7, 32])
def test_streaming_in_pieces_gives_the_whole_array_verdict(mixed, rule, size):
    """The grid stream and the source-rate cut stream (here the source is every frame, the
    grid every other one with some shown twice), fed in pieces as ClipMaker feeds them."""
    grid_src = [i for i in range(0, len(mixed), 2) for _ in range(1 + (i % 14 == 0))]
    grid = mixed[grid_src]
    whole = transitions(rule(), grid, mixed, grid_src, 32.0)
    assert len(whole) == len(grid) and whole.any()
    s, out, pushed = TwoRate(rule(), [], 32.0), [], 0
    for i in range(0, len(grid), size):
        s.grid_src.extend(grid_src[i:i + size])
        upto = grid_src[min(i + size, len(grid)) - 1] + 1
        s.push_source(mixed[pushed:upto])
        pushed = upto
        out.append(s.push(grid[i:i + size]))
    s.push_source(mixed[pushed:])
    out.append(s.flush())
    assert np.array_equal(np.concatenate(out), whole)


def test_frames_of_another_size_are_scaled_for_the_rules(mixed):
    big = np.stack([cv2.resize(f, (128, 72), interpolation=cv2.INTER_LINEAR) for f in mixed])
    assert np.array_equal(_rules(big), _rules(np.stack([_small(f) for f in big])))


def _cut_into(before: list[np.ndarray], after: list[np.ndarray]):
    small = np.stack([_small(np.clip(f, 0, 255).astype(np.uint8)) for f in before + after])
    d1 = _changes(small.astype(np.float32))[0]
    return small, d1, _local_level(d1), len(before)


def test_a_cut_after_a_blurred_frame_is_a_cut():
    """Regression (music video, grid 85): the frame before the cut moves enough (motion blur)
    that the change there is more than 0.3 of the cut's, which the old rule took for no cut."""
    a = synth.Shot("coffee", 80, (1.3, 1.3), ((0.0, 0.5), (1.0, 0.5)))
    b = synth.Shot("retina", 40, (1.2, 1.2), ((0.5, 0.2), (0.5, 0.6)))
    before = _shot_frames(a, range(0, 40))
    before[-1] = cv2.GaussianBlur(_shot_frames(a, [47])[0], (0, 0), 2.0)  # a jerk, blurred
    small, d1, level, at = _cut_into(before, _shot_frames(b, range(40)))
    assert 0.3 * d1[at] < d1[at - 1] < 0.5 * d1[at]      # what the old rule rejected
    cut, _ = classify(small)
    assert cut[at - 1] and cut[at]
    # The jerk itself may count as a cut too (it is a spike of its own); nothing further away.
    assert not cut[:at - 2].any() and not cut[at + 1:].any()


def test_a_cut_into_fast_motion_is_a_cut():
    """Regression (music video, source frame 2661): a calm shot, a spike, then a shot whose own
    frames change almost as much as the cut (fast hand motion)."""
    a = synth.Shot("coins", 40, (1.1, 1.1), ((0.3, 0.5), (0.32, 0.5)))
    b = synth.Shot("chelsea", 8, (2.0, 2.0), ((0.0, 0.0), (1.0, 1.0)))  # a whip across the picture
    small, d1, level, at = _cut_into(_shot_frames(a, range(40)), _shot_frames(b, range(8)))
    assert d1[at + 1] >= 0.5 * d1[at]                      # not isolated: the relaxed rule alone fails
    assert d1[at] >= 4 * (level[at] + 1) and d1[at - 1] < 0.5 * d1[at]
    cut, _ = classify(small)
    assert cut[at - 1] and cut[at] and not cut[:at - 1].any()


def test_a_cut_the_grid_skips_is_marked_through_the_source_rate_rule():
    """At 30 fps the grid skips every other frame or so; a cut whose first frame is skipped
    still marks the grid frames on both sides of it (the rule reads every source frame), also
    when the shot after it moves fast."""
    a = synth.Shot("coins", 92, (1.2, 1.2), ((0.3, 0.5), (0.5, 0.5)))
    b = synth.Shot("chelsea", 40, (1.6, 1.6), ((0.0, 0.2), (1.0, 0.8)))   # a fast pan
    src = np.stack([_small(np.clip(f, 0, 255).astype(np.uint8))
                    for f in _shot_frames(a, range(92)) + _shot_frames(b, range(40))])
    grid_src = _grid(len(src))
    cut = 92                                  # first frame of b
    assert cut not in grid_src                # the grid never shows it
    mask = transitions(TransitionRule(), src[grid_src], src, grid_src, SRC_FPS)
    j = int(np.searchsorted(grid_src, cut))   # first grid frame of b
    assert mask[j - 1] and mask[j]
    assert not mask[:j - 1].any() and not mask[j + 1:].any()


def test_a_flash_of_a_few_source_frames_at_60_fps_is_no_cut():
    """At 60 fps a flash of 6 frames (0.1 s) changes the picture for longer than 4 frames; the
    rule asks a quarter of a second later (15 frames) and whether the picture of a moment ago is
    back, so neither the flash nor its end is a cut."""
    shot = synth.Shot("rocket", 120, (1.0, 1.2), ((0.2, 0.5), (0.8, 0.5)))
    frames = [np.clip(f, 0, 255) for f in _shot_frames(shot, range(120))]
    for d, w in enumerate((0.6, 0.9, 0.9, 0.8, 0.7, 0.5)):
        frames[50 + d] = (1 - w) * frames[50 + d] + w * 255.0
    src = np.stack([_small(f.astype(np.uint8)) for f in frames])
    grid_src = np.arange(0, 120, 4)             # the 16 fps grid shows every 4th frame
    mask = transitions(TransitionRule(), src[grid_src], src, grid_src, 60.0)
    assert not mask.any(), np.flatnonzero(mask).tolist()
