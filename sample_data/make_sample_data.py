"""Regenerate the shipped sample clips and their ground truth.

    python sample_data/make_sample_data.py [OUT_DIR]

OUT_DIR defaults to this script's folder. Output is deterministic: the same
ground truth every run (and, with the same x264 build, the same bytes).
"""

from __future__ import annotations

import json
import sys
import time
from fractions import Fraction
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run as a plain script from anywhere

from tools.synth import CUT, dissolve, make_shots, write_video  # noqa: E402

# x264 CRF for all clips: 23 keeps the photo texture crisp at ~3 MB in total
# (30 would give ~1.3 MB with visible smearing on the fine-grained photos).
CRF = 23


def main(out_dir: Path) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    truth = {}

    # Edited montage: 5 shots of 6.5 s (156 frames) at 24 fps, three hard cuts
    # and one 15-frame cross-dissolve between shots 3 and 4.
    shots = make_shots([156] * 5, seed=1)
    truth["montage_24fps.mp4"] = write_video(
        out_dir / "montage_24fps.mp4", shots, [CUT, CUT, dissolve(15), CUT],
        1280, 720, 24, crf=CRF)

    # A phone held upright: landscape pixels plus a 90-degree display rotation,
    # so players show 720x1280.
    shots = make_shots([195, 75], photos=["rocket", "coins"], seed=2)
    truth["phone_portrait.mp4"] = write_video(
        out_dir / "phone_portrait.mp4", shots, [CUT], 1280, 720, 30, crf=CRF, rotation=90)

    # Stock footage: NTSC rate, moov first as web downloads have it.
    shots = make_shots([180, 180], photos=["hubble_deep_field", "immunohistochemistry"], seed=3)
    truth["stock_30fps.mp4"] = write_video(
        out_dir / "stock_30fps.mp4", shots, [CUT], 1280, 720, Fraction(30000, 1001),
        crf=CRF, faststart=True)

    # 2 s: shorter than one 81-frame clip at 16 fps (5.06 s).
    shots = make_shots([50], photos=["retina"], seed=4)
    truth["too_short.mp4"] = write_video(out_dir / "too_short.mp4", shots, None, 1280, 720, 25, crf=CRF)

    (out_dir / "ground_truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    return truth


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE
    t0 = time.perf_counter()
    for name, gt in main(out).items():
        size = (out / name).stat().st_size
        print(f"{name:22s} {size / 1e6:6.2f} MB  {gt['num_frames']:4d} frames  "
              f"{gt['display_width']}x{gt['display_height']} @ {gt['fps_fraction']} fps")
    print(f"done in {time.perf_counter() - t0:.1f} s -> {out}")
