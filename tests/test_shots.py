"""Shot detectors on the output grid: streaming equals batch, cuts and dissolves are found."""
import json
from pathlib import Path

import numpy as np
import pytest

from wandata.media.bucket import fit
from wandata.detect.cascade import CascadeDetector
from wandata.media.decode import Timeline, grid_frames
from wandata.detect.adaptive import AdaptiveDetector
from wandata.detect import registry
from wandata.detect.base import NoDetector, TwoRate, transitions
from wandata.detect.registry import make_detector
from wandata.detect.tracker import ShotTracker
from wandata.detect.transnet import TransNetV2Detector
from wandata.media.picture import tiny_rgb, to_bucket

from .conftest import SAMPLE


@pytest.fixture(scope="module")
def montage():
    """The sample montage's grid frames as the detectors see them, with ground truth."""
    f = fit(1280, 720, ((832, 480),))
    tl = Timeline()
    tiny = []
    small = [pic.small_rgb(48, 27)
             for _, pic in grid_frames(str(SAMPLE / "montage_24fps.mp4"), 16, lambda fr: to_bucket(fr, f, 0), tl,
                                       lambda fr: tiny.append(tiny_rgb(fr, f, 0, (48, 27))))]
    truth = json.loads((SAMPLE / "ground_truth.json").read_text())["montage_24fps.mp4"]
    return np.stack(small), np.asarray(tl.grid_src), truth, np.stack(tiny)


def _all(detector, montage):
    small, grid_src, _, tiny = montage
    return transitions(detector, small, tiny, grid_src, 24.0)


def _stream_in_pieces(detector, montage, seed=0):
    """Fed as ClipMaker feeds it: each grid piece after the source frames it shows."""
    small, grid_src, _, tiny = montage
    rng = np.random.default_rng(seed)
    s, out, i, pushed = TwoRate(detector, [], 24.0), [], 0, 0
    while i < len(small):
        k = int(rng.integers(1, 70))
        s.grid_src.extend(grid_src[i:i + k].tolist())
        upto = int(grid_src[min(i + k, len(small)) - 1]) + 1
        s.push_source(tiny[pushed:upto])
        pushed = upto
        out.append(s.push(small[i:i + k]))
        i += k
    s.push_source(tiny[pushed:])
    out.append(s.flush())
    return np.concatenate(out).astype(bool)


@pytest.mark.parametrize("make", [lambda: TransNetV2Detector(device="cpu"), lambda: CascadeDetector(device="cpu"),
                                  lambda: AdaptiveDetector(16)])
def test_streaming_in_any_pieces_gives_the_batch_verdict(montage, make):
    whole = _all(make(), montage)
    assert len(whole) == len(montage[0])
    assert np.array_equal(_stream_in_pieces(make(), montage), whole)


def _covered(mask, grid_src, truth):
    """Every cut and every dissolve frame that the grid shows is inside the mask (or its trim)."""
    hit = set(grid_src[np.flatnonzero(mask)].tolist())
    for c in truth["cuts"]:
        assert {c - 1, c} & hit or any(abs(h - c) <= 2 for h in hit), f"cut at {c} missed"
    for a, b in truth["dissolves"]:
        shown = [j for j, s in enumerate(grid_src) if a <= s <= b]
        assert all(mask[j] or mask[max(0, j - 2):j + 3].any() for j in shown), f"dissolve {a}..{b} missed"


@pytest.mark.parametrize("make", [lambda: TransNetV2Detector(device="cpu"), lambda: CascadeDetector(device="cpu")])
def test_cuts_and_the_dissolve_are_found(montage, make):
    _covered(_all(make(), montage), montage[1], montage[2])


def test_cascade_runs_the_network_on_a_fraction_of_the_frames(montage):
    det = CascadeDetector(device="cpu")
    _all(det, montage)
    assert det.frames_seen == len(montage[0])
    assert det.frames_judged < 0.5 * len(montage[0])


def test_adaptive_finds_the_cuts_but_not_necessarily_the_dissolve(montage):
    _, grid_src, truth, _ = montage
    hit = set(grid_src[np.flatnonzero(_all(AdaptiveDetector(16), montage))].tolist())
    for c in truth["cuts"]:
        assert any(abs(h - c) <= 2 for h in hit)


def test_shot_tracker_trims_at_transitions_only():
    mask = np.zeros(100, bool)
    mask[40:43] = True                      # a transition
    t = ShotTracker(trim=4)
    closed, open_ = t.update(mask[:60])
    assert closed == [(0, 35)]              # start of file untrimmed, end trimmed by 4
    assert open_ == (47, 55)                # provisional: 4 after the transition, 4 before the edge
    closed, open_ = t.update(mask[60:])
    assert closed == [] and open_ == (47, 95)
    assert t.finish() == [(47, 99)]         # end of file untrimmed


def test_open_shot_grows_only_forward():
    rng = np.random.default_rng(1)
    mask = rng.random(400) < 0.02
    t = ShotTracker(trim=3)
    seen_open = []
    closed_all = []
    for i in range(0, 400, 7):
        closed, open_ = t.update(mask[i:i + 7])
        closed_all += closed
        if open_:
            seen_open.append(open_)
    closed_all += t.finish()
    for a, b in seen_open:  # every provisional span lies inside the shot it became
        assert any(ca == a and b <= cb for ca, cb in closed_all)


def test_detectors_are_found_by_name_and_built_with_the_arguments_they_take():
    assert isinstance(make_detector("none"), NoDetector)
    adaptive = make_detector("adaptive", fps=24)
    assert isinstance(adaptive, AdaptiveDetector) and adaptive.fps == 24.0
    cascade = make_detector("cascade", 0.3, "cpu")
    assert isinstance(cascade, CascadeDetector) and cascade.net.threshold == 0.3
    assert isinstance(make_detector("transnetv2", device="cpu"), TransNetV2Detector)
    assert isinstance(make_detector("auto", device="cpu"), CascadeDetector)
    auto_gpu = make_detector("auto", 0.4, "cuda:1")
    assert isinstance(auto_gpu, TransNetV2Detector) and auto_gpu.device == "cuda:1" and auto_gpu.threshold == 0.4
    with pytest.raises(ValueError, match="unknown detector"):
        make_detector("nope")


def test_the_detector_names_agree_everywhere():
    """settings.DETECTORS (the --detector choices), the registry and pyproject's entry points."""
    import tomllib

    from wandata.settings import BUILTIN_DETECTORS

    assert set(BUILTIN_DETECTORS) == {registry.AUTO, *registry.BUILTINS}
    project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    assert project["project"]["entry-points"][registry.ENTRY_POINT_GROUP] == registry.BUILTINS


PLUGIN_DETECTOR = """
import numpy as np


class _EveryThreeSeconds:
    # Marks grid frame 48 (3 s at 16 fps) as a transition: the run splits there.
    def __init__(self):
        self.n = 0

    def push(self, small):
        idx = np.arange(self.n, self.n + len(small))
        self.n += len(small)
        return idx == 48

    def flush(self):
        return np.zeros(0, dtype=bool)


class ThreeSeconds:
    name, size = "three-seconds", (16, 9)

    def stream(self):
        return _EveryThreeSeconds()
"""


def test_a_third_party_detector_is_a_valid_detector_option_end_to_end(tmp_path):
    """What `pip install` of a plugin leaves in site-packages (its module and a dist-info whose
    entry_points.txt registers the detector), then `wandata plan --detector NAME` in a fresh
    process: the name is accepted and the plugin's verdicts cut the shots."""
    import json
    import subprocess
    import sys

    site = tmp_path / "site"
    info = site / "wandata_detector_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (site / "wandata_detector_plugin.py").write_text(PLUGIN_DETECTOR)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: wandata-detector-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[wandata.detectors]\nthree-seconds = wandata_detector_plugin:ThreeSeconds\n")
    src = Path(__file__).resolve().parent.parent / "sample_data" / "stock_30fps.mp4"

    def plan(detector):
        r = subprocess.run([sys.executable, "-m", "wandata", "plan", str(src), "--frames", "17", "--json",
                            "--trim", "0", "--detector", detector], capture_output=True, text=True, timeout=300,
                           env={**__import__("os").environ, "PYTHONPATH": str(site)})
        assert r.returncode == 0, r.stderr[-2000:]
        (source,) = json.loads(r.stdout)["sources"]
        return source["shots"]

    assert plan("none") == [[0.0, 12.0625]]
    shots = plan("three-seconds")
    assert len(shots) == 2 and shots[0][1] == 3.0 and shots[1][0] == 3.0625, shots


@pytest.mark.parametrize("zoom", [False, True], ids=["cover", "cropped-2x"])
@pytest.mark.parametrize("rotation", [0, 90])
def test_tiny_copy_of_every_source_frame_shows_the_buckets_picture(rotation, zoom):
    """The cut rule's tiny copies (decimated planes, no full-frame scaling) crop as the bucket
    does, upright, also a bucket that crops deep into the frame (as a border crop does):
    compared with the bucket picture scaled down the usual way (another crop differs by ~50)."""
    import dataclasses

    import av

    f = fit(*((720, 1280) if rotation else (1280, 720)), ((832, 480), (480, 832)))
    if zoom:
        f = dataclasses.replace(f, scaled_w=f.scaled_w * 2, scaled_h=f.scaled_h * 2,
                                crop_x=f.crop_x + f.scaled_w // 2, crop_y=f.scaled_h // 2)
    size = (27, 48) if rotation else (48, 27)
    diffs = []
    with av.open(str(SAMPLE / "montage_24fps.mp4")) as c:
        for i, fr in enumerate(c.decode(video=0)):
            if i % 10:
                continue
            tiny = tiny_rgb(fr, f, rotation, size)
            ref = to_bucket(fr, f, rotation).small_rgb(*size)
            assert tiny.shape == ref.shape == (size[1], size[0], 3)
            diffs.append(np.abs(tiny.astype(np.int16) - ref).mean())
            if i > 120:
                break
    assert max(diffs) < 6, diffs
