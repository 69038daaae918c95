#!/usr/bin/env python
"""Shot-detector throughput and accuracy on the output grid, on CPU or GPU.

    python bench/shots.py --video SRC.mp4 --truth SRC.json           # decode here first
    python bench/shots.py --frames small.npy --grid grid.npy --truth SRC.json --device cuda

``--save-frames DIR`` writes the grid frames (48x27 RGB) and the grid -> source frame map
as .npy, so a machine without PyAV (a lent GPU) can run the detectors on them. Prints, per
detector: grid frames per second (model load excluded, reported apart), frames the network
judged, and the ground-truth cuts and dissolves it missed.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wandata.detect.base import transitions  # noqa: E402
from wandata.detect.registry import make_detector  # noqa: E402


def grid_frames_of(video: Path) -> tuple[np.ndarray, np.ndarray]:
    import av

    from wandata.media.bucket import fit
    from wandata.media.decode import Timeline, grid_frames
    from wandata.media.picture import to_bucket

    with av.open(str(video)) as c:
        s = c.streams.video[0]
        f = fit(s.codec_context.width, s.codec_context.height, ((832, 480), (480, 832)))
    tl = Timeline()
    small = [p.small_rgb(48, 27) for _, p in grid_frames(str(video), 16, lambda fr: to_bucket(fr, f, 0), tl)]
    return np.stack(small), np.asarray(tl.grid_src)


def missed(mask: np.ndarray, grid_src: np.ndarray, truth: dict) -> tuple[list, list]:
    cuts = [c for c in truth["cuts"]
            if not mask[max(0, int(np.searchsorted(grid_src, c)) - 2):int(np.searchsorted(grid_src, c)) + 2].any()]
    dissolves = [d for d in truth["dissolves"]
                 if not all(mask[max(0, j - 2):j + 3].any() for j in np.flatnonzero((grid_src >= d[0]) & (grid_src <= d[1])))]
    return cuts, dissolves


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--video", type=Path)
    p.add_argument("--frames", type=Path, help="grid frames .npy (from --save-frames)")
    p.add_argument("--grid", type=Path, help="grid -> source frame .npy (from --save-frames)")
    p.add_argument("--truth", type=Path, help="ground truth JSON of tools.synth")
    p.add_argument("--device", default="auto")
    p.add_argument("--detectors", nargs="+", default=["transnetv2", "cascade", "adaptive"])
    p.add_argument("--save-frames", type=Path, metavar="DIR")
    p.add_argument("--json", type=Path, metavar="OUT")
    a = p.parse_args()
    if a.video:
        small, grid_src = grid_frames_of(a.video)
    else:
        small, grid_src = np.load(a.frames), np.load(a.grid)
    if a.save_frames:
        a.save_frames.mkdir(parents=True, exist_ok=True)
        np.save(a.save_frames / "small.npy", small)
        np.save(a.save_frames / "grid.npy", grid_src)
    truth = json.loads(a.truth.read_text()) if a.truth else None
    rows = []
    for name in a.detectors:
        det = make_detector(name, device=a.device)
        t = time.perf_counter()
        if hasattr(det, "preload"):
            det.preload()
        load = time.perf_counter() - t
        t = time.perf_counter()
        mask = transitions(det, small)
        run = time.perf_counter() - t
        row = {"detector": name, "device": getattr(getattr(det, "net", det), "device", "cpu"),
               "grid_frames": len(small), "load_s": round(load, 2), "run_s": round(run, 3),
               "fps": round(len(small) / run, 1),
               "judged": getattr(det, "frames_judged", len(small) if name == "transnetv2" else 0)}
        if truth:
            row["missed_cuts"], row["missed_dissolves"] = missed(mask, grid_src, truth)
        rows.append(row)
    try:
        import torch
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    except ImportError:
        gpu = "none"
    print(f"{'detector':11s} {'device':6s} {'frames':>6s} {'load s':>6s} {'run s':>7s} {'fps':>8s} {'judged':>6s}  missed")
    for r in rows:
        print(f"{r['detector']:11s} {str(r['device']):6s} {r['grid_frames']:6d} {r['load_s']:6.2f} {r['run_s']:7.3f} "
              f"{r['fps']:8.1f} {r['judged']:6d}  cuts {r.get('missed_cuts', '-')} dissolves {r.get('missed_dissolves', '-')}")
    print(f"GPU: {gpu}")
    if a.json:
        a.json.write_text(json.dumps({"gpu": gpu, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
