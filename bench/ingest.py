#!/usr/bin/env python
"""How fast is `wandata ingest`, next to the ffmpeg floor and to doing it by hand?

For each requested resolution this script makes (or reuses) one synthetic source
video and times three things on it, each in a fresh subprocess, as wall time:

  floor    ffmpeg decoding every source frame once, plus ffmpeg encoding (with
           wandata's x264 settings) as many output frames as wandata wrote.
  wandata  `wandata ingest SRC -o NEW_DIR --quiet --json`: a first run into an
           empty dataset directory, interpreter start-up and model load included.
  hand     what a user does today: `scenedetect -i SRC detect-adaptive split-video`,
           then one ffmpeg call per piece to make it 16 fps and cover-crop it to
           the bucket size.

and prints one row per resolution with the ratios wandata/floor (target <= 1.3)
and hand/wandata (target >= 2.0). See bench/README.md for the column meanings.

    python bench/ingest.py                                  # 720p and 1080p, 60 s each
    python bench/ingest.py --seconds 12 --resolutions 720p  # quick smoke run
    python bench/ingest.py --json bench/latest.json
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # benchmark the working tree, not some installed copy

import av  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from tools import synth  # noqa: E402
from wandata.settings import Settings  # noqa: E402
from wandata.media.tools import ffmpeg_exe  # noqa: E402

# name -> (width, height, frame rate of the generated source)
RESOLUTIONS = {
    "480p": (854, 480, 30),
    "720p": (1280, 720, 30),
    "1080p": (1920, 1080, 24),
    "1440p": (2560, 1440, 24),
    "2160p": (3840, 2160, 24),
}
WANDATA_TARGET = 1.3   # wandata / floor must be at most this
HAND_TARGET = 2.0      # hand / wandata must be at least this

# Source footage: shot lengths in seconds, cycled until the requested duration is
# filled. Every second one is shorter than one 81-frame window at 16 fps (5.06 s),
# so some shots must yield no clip at all.
SHOT_SECONDS = (7.5, 3.5, 11.0, 4.5, 6.0, 12.0, 3.0, 8.5, 4.8, 9.5, 5.5, 10.0)
MIN_SHOT_S = 3.0
DISSOLVE_AT = (1, 4)   # these transitions are 15-frame dissolves, the rest hard cuts
DISSOLVE_FRAMES = 15
SOURCE_CRF, SOURCE_PRESET = 20, "veryfast"
# Camera-like footage: sensor grain and a phone camera's constant bitrate. Clean synthetic
# pans at CRF 20 decode about 3x faster than real footage of the same size, which would make
# the floor (mostly decoding + encoding) unrealistically cheap next to everything else.
SOURCE_GRAIN = 3.0
SOURCE_BITRATE = {480: "4M", 720: "8M", 1080: "16M", 1440: "24M", 2160: "45M"}
GENERATOR_VERSION = 2  # bump when the footage recipe changes, to invalidate the cache

# What `scenedetect split-video` runs per scene when given no encoder options
# (scenedetect.output.video._DEFAULT_FFMPEG_ARGS, PySceneDetect 0.7.x); recorded in the results.
SPLIT_VIDEO_DEFAULT_ARGS = "-map 0:v:0 -map 0:a? -map 0:s? -c:v libx264 -preset veryfast -crf 22 -c:a aac"


# ----------------------------------------------------------------------- footage


def shot_layout(seconds: float, fps: int):
    """Shot lengths in frames and the transitions between them, filling ``seconds``."""
    spans, left, k = [], seconds, 0
    while left > 0:
        want = SHOT_SECONDS[k % len(SHOT_SECONDS)]
        take = left if left < want + MIN_SHOT_S else want
        spans.append(take)
        left -= take
        k += 1
    frames = [round(s * fps) for s in spans]
    transitions = [synth.dissolve(DISSOLVE_FRAMES) if i in DISSOLVE_AT else synth.CUT
                   for i in range(len(frames) - 1)]
    # A dissolve overlaps the two shots it joins; lengthen the incoming shot by the
    # overlap so that the file stays exactly `seconds` long.
    for i, t in enumerate(transitions):
        frames[i + 1] += t.frames
    return frames, transitions


def make_shots(frames: list[int]) -> list:
    """One shot per length; a photo is never reused within 14 shots in a row."""
    n = len(synth.PHOTOS)
    shots = []
    for start in range(0, len(frames), n):
        chunk = frames[start:start + n]
        photos = [synth.PHOTOS[(start + i) % n] for i in range(len(chunk))]
        shots += synth.make_shots(chunk, photos, seed=start)
    return shots


def source_video(cache: Path, name: str, width: int, height: int, fps: int, seconds: float):
    """The cached source file for one resolution and its ground truth (made on first use)."""
    stem = f"src_{name}_{width}x{height}_{fps}fps_{seconds:g}s_v{GENERATOR_VERSION}"
    path, truth_path = cache / f"{stem}.mp4", cache / f"{stem}.json"
    if path.exists() and truth_path.exists():
        return path, json.loads(truth_path.read_text())
    cache.mkdir(parents=True, exist_ok=True)
    frames, transitions = shot_layout(seconds, fps)
    print(f"  generating {path.name} ({len(frames)} shots, {seconds:g} s) ...", flush=True)
    tmp = path.with_name(path.stem + ".part.mp4")
    truth = synth.write_video(tmp, make_shots(frames), transitions, width, height, fps,
                              crf=SOURCE_CRF, preset=SOURCE_PRESET, grain=SOURCE_GRAIN,
                              bitrate=SOURCE_BITRATE.get(min(width, height)))
    os.replace(tmp, path)
    truth_path.write_text(json.dumps(truth))
    return path, truth


# ----------------------------------------------------------------------- helpers


def timed(argv: list[str], ok=(0,), **kwargs) -> tuple[float, subprocess.CompletedProcess]:
    """Run argv (never through a shell) and return its wall time; fail loudly on error."""
    t = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, **kwargs)
    seconds = time.perf_counter() - t
    if proc.returncode not in ok:
        tail = proc.stderr.decode(errors="replace")[-3000:]
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(map(str, argv))}\n{tail}")
    return seconds, proc


def ffmpeg(*args) -> list[str]:
    return [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", *map(str, args)]


def frame_count(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.demux(video=0) if _.size)


def bucket_for(width: int, height: int) -> tuple[int, int]:
    return (832, 480) if width >= height else (480, 832)


def cli_supports(option: str) -> bool:
    proc = subprocess.run([sys.executable, "-m", "wandata.cli", "ingest", "--help"],
                          capture_output=True, text=True, env=child_env())
    return option in proc.stdout


def child_env(path_prefix: str | None = None) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    if path_prefix:
        env["PATH"] = path_prefix + os.pathsep + env.get("PATH", "")
    return env


# ----------------------------------------------------------------------- the three runs


def run_wandata(src: Path, dataset: Path, detector: str | None, engine: str | None) -> dict:
    argv = [sys.executable, "-m", "wandata.cli", "ingest", str(src), "-o", str(dataset), "--quiet", "--json"]
    if detector:
        argv += ["--detector", detector]
    if engine:
        argv += ["--engine", engine]
    seconds, proc = timed(argv, ok=(0, 3), env=child_env())  # 3: some clips failed, still a result
    summary = json.loads(proc.stdout)
    clips = sorted(Path(p) for p in glob.glob(str(dataset / "clips" / "**" / "*.mp4"), recursive=True))
    rows = pq.read_table(dataset / "manifest.parquet").to_pylist()
    source_row = next(r for r in rows if r["kind"] == "source")
    clip_rows = [r for r in rows if r["kind"] == "clip" and r["status"] == "kept"]
    return {"seconds": seconds, "argv": argv[1:], "summary": summary, "clips": clips,
            "clip_rows": clip_rows, "stages": json.loads(source_row["timings_json"] or "{}")}


def model_load_seconds(detector: str) -> float | None:
    """Start-up + detector load + one tiny inference in a fresh interpreter: the fixed
    cost inside the wandata time that does not grow with the footage."""
    if detector not in ("auto", "transnetv2", "cascade"):
        return None
    code = ("import numpy as np; import wandata.ingest.run; from wandata.detect.registry import make_detector; "
            "from wandata.detect.base import transitions; transitions(make_detector('transnetv2'), np.zeros((1, 27, 48, 3), np.uint8))")
    return timed([sys.executable, "-c", code], env=child_env())[0]


def run_floor(src: Path, clips: list[Path], work: Path, crf: int, preset: str) -> dict:
    """Decode the source once + encode wandata's output frames once, both with ffmpeg."""
    decode_s, _ = timed(ffmpeg("-i", src, "-map", "0:v:0", "-f", "null", "-"))
    # Untimed: gather wandata's output frames as raw yuv420p, one file per clip size, so the
    # timed encode below does nothing but encode (no decoding of the clips, no process per clip).
    raw: dict[tuple[int, int], Path] = {}
    for clip in clips:
        with av.open(str(clip)) as c:
            s = c.streams.video[0]
            size = (s.codec_context.width, s.codec_context.height)
        target = raw.setdefault(size, work / f"floor_{size[0]}x{size[1]}.yuv")
        with open(target, "ab") as out:
            subprocess.run(ffmpeg("-v", "error", "-i", clip, "-map", "0:v:0", "-f", "rawvideo",
                                  "-pix_fmt", "yuv420p", "-"), stdout=out, check=True)
    encode_s, frames = 0.0, 0
    for (w, h), path in raw.items():
        frames += path.stat().st_size // (w * h * 3 // 2)
        encode_s += timed(ffmpeg("-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{w}x{h}",
                                 "-framerate", "16", "-i", path, "-c:v", "libx264", "-crf", crf,
                                 "-preset", preset, "-pix_fmt", "yuv420p", "-f", "null", "-"))[0]
        path.unlink()
    return {"seconds": decode_s + encode_s, "decode_s": decode_s, "encode_s": encode_s,
            "encoded_frames": frames,
            "encode_method": "wandata's clips decoded (untimed) to one raw yuv420p stream per clip "
                             "size, then encoded in one timed ffmpeg call per size to -f null"}


def run_hand(src: Path, work: Path, width: int, height: int, fps: float, crf: int, preset: str) -> dict:
    """`scenedetect ... split-video`, then one ffmpeg resize/re-time per piece."""
    bin_dir, pieces_dir, out_dir = work / "bin", work / "hand_pieces", work / "hand_out"
    for d in (bin_dir, pieces_dir, out_dir):
        d.mkdir(parents=True, exist_ok=True)
    # split-video calls `ffmpeg` from PATH; give it the same binary the other runs use.
    link = bin_dir / "ffmpeg"
    if not link.exists():
        link.symlink_to(ffmpeg_exe())
    split_s, _ = timed([sys.executable, "-m", "scenedetect", "-i", str(src), "detect-adaptive",
                        "split-video", "-o", str(pieces_dir)], env=child_env(str(bin_dir)))
    bw, bh = bucket_for(width, height)
    vf = f"fps={fps:g},scale={bw}:{bh}:force_original_aspect_ratio=increase,crop={bw}:{bh}"
    pieces = sorted(pieces_dir.glob("*.mp4"))
    resize_s = 0.0
    for piece in pieces:
        resize_s += timed(ffmpeg("-i", piece, "-vf", vf, "-c:v", "libx264", "-crf", crf, "-preset", preset,
                                 "-pix_fmt", "yuv420p", "-an", out_dir / piece.name))[0]
    return {"seconds": split_s + resize_s, "split_s": split_s, "resize_s": resize_s,
            "pieces": len(pieces), "output_frames": sum(frame_count(p) for p in out_dir.glob("*.mp4")),
            "split_video_encoder": SPLIT_VIDEO_DEFAULT_ARGS,
            "resize_filter": vf}


# ----------------------------------------------------------------------- checks on wandata's clips


def clip_check(truth: dict, clip_rows: list[dict], window_frames: int, out_fps: float) -> dict:
    """Compare wandata's clips with the footage's ground truth.

    ``possible``: 81-frame windows that fit, back to back, in the pure (transition-free)
    part of each true shot; wandata trims 0.25 s at each boundary, so it may write fewer.
    ``crossing``: clips whose source frames do not all lie inside one true shot.
    """
    window_s = window_frames / out_fps
    possible = sum(int(((b - a + 1) / truth["fps"]) // window_s) for a, b in truth["shots"])
    crossing = []
    for r in clip_rows:
        frames = r["src_frames"]
        if not any(a <= min(frames) and max(frames) <= b for a, b in truth["shots"]):
            crossing.append({"clip": r["clip_id"], "src_frames": [min(frames), max(frames)]})
    bad_verify = [r["clip_id"] for r in clip_rows
                  if r["verified_frames"] != window_frames or abs(r["verified_fps"] - out_fps) > 1e-3]
    return {"possible": possible, "crossing": crossing, "verify_mismatch": bad_verify}


# ----------------------------------------------------------------------- one resolution


@dataclass
class Row:
    resolution: str
    width: int
    height: int
    fps: float
    seconds: float
    frames: int
    clips: int = 0
    output_frames: int = 0
    floor_s: float = 0.0
    wandata_s: float = 0.0
    hand_s: float = 0.0
    detail: dict = field(default_factory=dict)

    @property
    def wandata_over_floor(self) -> float:
        return self.wandata_s / self.floor_s

    @property
    def hand_over_wandata(self) -> float:
        return self.hand_s / self.wandata_s

    def fps_of(self, seconds: float) -> float:
        return self.frames / seconds

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(wandata_over_floor=round(self.wandata_over_floor, 3),
                 hand_over_wandata=round(self.hand_over_wandata, 3),
                 wandata_pass=self.wandata_over_floor <= WANDATA_TARGET,
                 hand_pass=self.hand_over_wandata >= HAND_TARGET,
                 source_fps={k: round(self.fps_of(getattr(self, f"{k}_s")), 1)
                             for k in ("floor", "wandata", "hand")})
        for k in ("floor_s", "wandata_s", "hand_s"):
            d[k] = round(d[k], 2)
        return d


def bench_one(name: str, args, settings: Settings, engine: str | None, work: Path) -> Row:
    width, height, fps = parse_resolution(name, args.fps)
    src, truth = source_video(args.cache, name, width, height, fps, args.seconds)
    src.read_bytes()  # warm the page cache so no run pays the first disk read
    row = Row(name, width, height, fps, truth["duration_s"], truth["num_frames"])
    # Measured first on purpose: it also loads torch and the weights into the OS file cache,
    # so the wandata run below pays its own start-up and model load, but not a cold disk.
    load_s = model_load_seconds(args.detector)
    print(f"  {name}: wandata x{args.repeat} ...", flush=True)
    runs = []
    for i in range(args.repeat):
        shutil.rmtree(work / f"dataset_{name}", ignore_errors=True)
        runs.append(run_wandata(src, work / f"dataset_{name}", args.detector, engine))
    w = runs[-1]
    local_s = None
    if engine and engine != "local":
        # The same footage through the local engine, so that the other engine's cost shows.
        print(f"  {name}: wandata --engine local x{args.repeat} ...", flush=True)
        local = []
        for i in range(args.repeat):
            shutil.rmtree(work / f"dataset_{name}_local", ignore_errors=True)
            local.append(run_wandata(src, work / f"dataset_{name}_local", args.detector, "local")["seconds"])
        local_s = round(statistics.median(local), 2)
    row.wandata_s = statistics.median(r["seconds"] for r in runs)
    row.clips = len(w["clips"])
    row.output_frames = sum(r["verified_frames"] for r in w["clip_rows"])
    print(f"  {name}: floor x{args.repeat} ...", flush=True)
    floors = [run_floor(src, w["clips"], work, settings.crf, settings.preset) for _ in range(args.repeat)]
    f = floors[-1]
    row.floor_s = statistics.median(x["seconds"] for x in floors)
    f["all_seconds"] = [round(x["seconds"], 2) for x in floors]
    print(f"  {name}: hand path ...", flush=True)
    h = run_hand(src, work / f"hand_{name}", width, height, settings.fps, settings.crf, settings.preset)
    row.hand_s = h["seconds"]
    row.detail = {
        "source": str(src), "shots": len(truth["shots"]), "cuts": len(truth["cuts"]),
        "dissolves": len(truth["dissolves"]),
        "floor": f,
        "wandata": {"argv": w["argv"], "clips_in_summary": w["summary"]["clips"],
                    "all_seconds": [round(r["seconds"], 2) for r in runs],
                    "stages_s": w["stages"], "summary_seconds": w["summary"]["seconds"],
                    "startup_and_model_load_s": load_s,
                    "engine": engine or "local", "local_engine_s": local_s},
        "hand": h,
        "clip_check": clip_check(truth, w["clip_rows"], settings.frames, settings.fps),
    }
    if row.output_frames != f["encoded_frames"]:
        row.detail["floor"]["warning"] = (f"floor encoded {f['encoded_frames']} frames but the manifest "
                                          f"lists {row.output_frames}")
    return row


def parse_resolution(name: str, fps: int | None) -> tuple[int, int, int]:
    if name in RESOLUTIONS:
        w, h, default_fps = RESOLUTIONS[name]
    else:
        try:
            w, h = (int(v) for v in name.lower().split("x"))
        except ValueError:
            raise SystemExit(f"resolution {name!r}: use one of {', '.join(RESOLUTIONS)} or WIDTHxHEIGHT") from None
        default_fps = 30
    return w, h, fps or default_fps


# ----------------------------------------------------------------------- report


def mark(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def print_report(rows: list[Row], notes: list[str]) -> None:
    head = (f"{'source':>18} {'fps':>4} {'sec':>5} {'frames':>6} | {'clips':>5} {'out fr':>6} | "
            f"{'floor s':>7} {'wandata s':>9} {'hand s':>7} | {'wandata/floor':>15} {'hand/wandata':>14} | "
            f"{'src fps: floor':>14} {'wandata':>7} {'hand':>6}")
    print()
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r.resolution + ' ' + str(r.width) + 'x' + str(r.height):>18} {r.fps:>4g} {r.seconds:>5.1f} "
              f"{r.frames:>6} | {r.clips:>5} {r.output_frames:>6} | "
              f"{r.floor_s:>7.1f} {r.wandata_s:>9.1f} {r.hand_s:>7.1f} | "
              f"{r.wandata_over_floor:>5.2f} {mark(r.wandata_over_floor <= WANDATA_TARGET):>9} "
              f"{r.hand_over_wandata:>5.2f} {mark(r.hand_over_wandata >= HAND_TARGET):>8} | "
              f"{r.fps_of(r.floor_s):>14.0f} {r.fps_of(r.wandata_s):>7.0f} {r.fps_of(r.hand_s):>6.0f}")
    print(f"targets: wandata/floor <= {WANDATA_TARGET}, hand/wandata >= {HAND_TARGET}")
    for r in rows:
        d = r.detail
        f, w, h, c = d["floor"], d["wandata"], d["hand"], d["clip_check"]
        print(f"\n{r.resolution}: {d['shots']} shots ({d['cuts']} cuts, {d['dissolves']} dissolves), {d['source']}")
        print(f"  floor   = decode {f['decode_s']:.1f} s + encode {f['encoded_frames']} frames {f['encode_s']:.1f} s")
        stages = ", ".join(f"{k[:-2]} {v:.1f}" for k, v in w["stages_s"].items())
        load = w["startup_and_model_load_s"]
        print(f"  wandata = {r.wandata_s:.1f} s wall (stages: {stages} s)"
              + (f"; start-up + model load alone: {load:.1f} s" if load is not None else ""))
        if w.get("local_engine_s") is not None:
            print(f"  engine  = {w['engine']} {r.wandata_s:.1f} s ({r.fps_of(r.wandata_s):.0f} src fps), "
                  f"local {w['local_engine_s']:.1f} s ({r.fps_of(w['local_engine_s']):.0f} src fps), same footage")
        print(f"  hand    = split-video {h['split_s']:.1f} s ({h['pieces']} pieces) + resize {h['resize_s']:.1f} s"
              f" -> {h['output_frames']} frames, whole scenes, not cut into {r.output_frames // max(r.clips, 1)}-frame clips")
        print(f"  clips   = {r.clips} written, {c['possible']} fit in the true shots, "
              f"{len(c['crossing'])} cross a true shot boundary, {len(c['verify_mismatch'])} fail frame/fps checks")
        for x in c["crossing"]:
            print(f"            crossing: {x['clip']} uses source frames {x['src_frames'][0]}..{x['src_frames'][1]}")
        if "warning" in f:
            print(f"  warning: {f['warning']}")
    if notes:
        print()
        for n in notes:
            print(f"note: {n}")


# ----------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolutions", nargs="+", default=["720p", "1080p"],
                   help=f"source sizes: {', '.join(RESOLUTIONS)} or WIDTHxHEIGHT (default: 720p 1080p)")
    p.add_argument("--seconds", type=float, default=120.0, help="length of each source (default 120)")
    p.add_argument("--fps", type=int, help="source frame rate (default: 30 up to 720p, 24 above)")
    p.add_argument("--detector", default="auto", help="passed to `wandata ingest --detector` (default: auto, the product default)")
    p.add_argument("--repeat", type=int, default=3, help="time floor and wandata this many times, report the median (default 3)")
    p.add_argument("--engine", help="passed to `wandata ingest --engine`, if the CLI has that option")
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "wandata-bench-cache",
                   help="where generated sources are kept between runs (default: %(default)s)")
    p.add_argument("--work", type=Path, help="scratch directory for outputs (default: a new temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    p.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON")
    args = p.parse_args(argv)

    settings = Settings()  # wandata's defaults: the floor and the hand path encode the same way
    notes = [
        f"encoder for floor, wandata and hand resize: libx264 crf {settings.crf} preset {settings.preset} "
        "yuv420p, ffmpeg's default thread count",
        "floor encode: wandata's clips concatenated as one raw yuv420p stream per clip size and "
        "encoded in one ffmpeg call (the raw frames are prepared untimed)",
        f"hand path split-video encoder (PySceneDetect default): {SPLIT_VIDEO_DEFAULT_ARGS}",
        "wandata time is a first run into an empty dataset dir, including Python start-up, "
        "imports and the detector's model load (OS file cache warmed beforehand)",
    ]
    engine = args.engine
    if engine and not cli_supports("--engine"):
        notes.append(f"`wandata ingest` has no --engine option; ran without --engine {engine}")
        engine = None

    work = args.work or Path(tempfile.mkdtemp(prefix="wandata-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"ffmpeg: {ffmpeg_exe()}\nwork dir: {work}\ncache: {args.cache}", flush=True)
    try:
        rows = [bench_one(name, args, settings, engine, work) for name in args.resolutions]
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print_report(rows, notes)
    if args.json:
        args.json.write_text(json.dumps({
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "python": platform.python_version(), "ffmpeg": ffmpeg_exe()},
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "targets": {"wandata_over_floor_max": WANDATA_TARGET, "hand_over_wandata_min": HAND_TARGET},
            "notes": notes,
            "results": [r.to_dict() for r in rows],
        }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
