#!/usr/bin/env python
"""How does `wandata ingest` scale with the number of workers, local engine and Ray?

Makes (or reuses) a fixed set of distinct synthetic sources, then for each engine and each
worker count N times one `wandata ingest SRC -o NEW_DIR --quiet --json` (a fresh dataset, wall
time of the whole command, interpreter start-up included):

  local  --engine local --workers N      (N processes on this machine)
  ray    --engine ray --ray-address H:P  on a Ray head started for this N with 2N logical CPUs
                                         (a task asks for 2), so that N sources run at once;
                                         the head's start is not timed, the driver's connect is.

and prints one row per (engine, N): wall seconds, sources/s, seconds of source video per wall
second, speed-up over N=1 of the same engine and % of linear (speed-up / N; the issue's target
is >= 70 % at 16). Sources are distinct (the same bytes twice would be ingested once).

    python bench/ingest_scaling.py --workers 1 2                      # a smoke run, a few minutes
    python bench/ingest_scaling.py --workers 1 2 4 8 16 --sources 48  # the issue's table (16 cores)
    python bench/ingest_scaling.py --engines local --json out.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # benchmark the working tree, not some installed copy

from tools import synth  # noqa: E402

RESOLUTIONS = {"360p": (640, 360), "480p": (854, 480), "720p": (1280, 720), "1080p": (1920, 1080)}
FPS = 25
SHOT_SECONDS = (7.0, 11.0, 4.0, 8.5)  # cycled; one shorter than a clip (81 frames at 16 fps)
GENERATOR_VERSION = 1
CPUS_PER_TASK = 2  # RayEngine's default request per task


def make_source(args) -> str:
    path, k, width, height, seconds = args
    if Path(path).exists():
        return path
    frames, left, i = [], seconds, 0
    while left > 0.5:
        take = min(SHOT_SECONDS[(i + k) % len(SHOT_SECONDS)], left)
        frames.append(round(take * FPS))
        left -= take
        i += 1
    photos = [synth.PHOTOS[(k + j) % len(synth.PHOTOS)] for j in range(len(frames))]
    tmp = Path(path).with_suffix(".part.mp4")
    synth.write_video(tmp, synth.make_shots(frames, photos, seed=k), None, width, height, FPS,
                      crf=20, preset="veryfast", grain=3.0)
    os.replace(tmp, path)
    return path


def sources(cache: Path, n: int, resolution: str, seconds: float, jobs: int) -> Path:
    width, height = RESOLUTIONS[resolution]
    # One folder per count: a run reads exactly these n files.
    folder = cache / f"scaling_{n}x{seconds:g}s_{resolution}_v{GENERATOR_VERSION}"
    folder.mkdir(parents=True, exist_ok=True)
    todo = [(str(folder / f"src{k:03d}.mp4"), k, width, height, seconds) for k in range(n)]
    missing = [t for t in todo if not Path(t[0]).exists()]
    if missing:
        print(f"generating {len(missing)} sources of {seconds:g} s at {resolution} in {folder} ...", flush=True)
        with ProcessPoolExecutor(jobs) as pool:
            list(pool.map(make_source, missing))
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayHead:
    """A one-node Ray cluster with ``cpus`` logical CPUs, started and stopped like a user's
    (`ray start --head`), killed by process id at the end (never `ray stop`, which would stop every
    Ray runtime on the machine)."""

    def __init__(self, cpus: int):
        self.root = Path(tempfile.mkdtemp(prefix="wdbench", dir="/tmp"))  # short: socket paths
        token = self.root / "token"
        token.write_text(secrets.token_hex(32))
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
                    "RAY_USAGE_STATS_ENABLED": "0"}
        self.env.pop("RAY_ADDRESS", None)
        port = free_port()
        self.address = f"127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", "--port", str(port),
               "--num-cpus", str(cpus), "--num-gpus", "0", "--include-dashboard=false",
               "--disable-usage-stats", "--temp-dir", str(self.root / "t"),
               "--dashboard-agent-listen-port", str(free_port()), "--metrics-export-port", str(free_port())]
        self.log = open(self.root / "head.log", "wb")
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        wait = ("import sys, time, ray\nray.init(address=sys.argv[1], logging_level='ERROR')\n"
                "t = time.time() + 60\n"
                "while ray.cluster_resources().get('CPU', 0) < float(sys.argv[2]) and time.time() < t:\n"
                "    time.sleep(0.2)\n")
        deadline = time.time() + 120
        while True:
            r = subprocess.run([sys.executable, "-c", wait, self.address, str(cpus)], env=self.env,
                               capture_output=True, text=True)
            if r.returncode == 0:
                break
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise SystemExit(f"the Ray head did not start:\n{r.stderr[-2000:]}\n"
                                 + (self.root / "head.log").read_text(errors="replace")[-2000:])
            time.sleep(1)

    def stop(self) -> None:
        pids = _tree(self.proc.pid)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)


def _tree(pid: int) -> list[int]:
    """pid and its descendants (Ray's workers start their own process groups)."""
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def _busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (every process: Ray's workers are not
    children of the ingest command), from /proc/stat; 0 where there is none."""
    try:
        f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = f[3] + (f[4] if len(f) > 4 else 0)
    return (sum(f[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def run_ingest(src: Path, dataset: Path, engine: str, workers: int, extra: list[str], env=None,
               address: str | None = None) -> tuple[float, dict]:
    shutil.rmtree(dataset, ignore_errors=True)
    argv = [sys.executable, "-m", "wandata.cli", "ingest", str(src), "-o", str(dataset), "--quiet", "--json",
            "--engine", engine, *extra]
    argv += ["--workers", str(workers)] if engine == "local" else ["--ray-address", address]
    t, busy = time.perf_counter(), _busy_seconds()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO)
    seconds = time.perf_counter() - t
    busy = _busy_seconds() - busy
    if proc.returncode != 0:
        raise SystemExit(f"ingest failed ({proc.returncode}): {' '.join(argv)}\n{proc.stderr[-3000:]}")
    summary = json.loads(proc.stdout)
    summary["_busy_s"] = busy
    shutil.rmtree(dataset, ignore_errors=True)
    return seconds, summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--engines", nargs="+", choices=["local", "ray"], default=["local", "ray"])
    ap.add_argument("--sources", type=int, help="how many sources (default: 2 x the largest --workers, at least 4)")
    ap.add_argument("--seconds", type=float, default=12.0, help="length of each source (default 12)")
    ap.add_argument("--resolution", choices=RESOLUTIONS, default="480p")
    ap.add_argument("--detector", default="adaptive",
                    help="ingest's --detector (default adaptive: no shot model, so the table shows the "
                         "engine's scaling, not torch's threads)")
    ap.add_argument("--threads", type=int, default=1,
                    help="ingest's --threads for every run (default 1: one source, one core, so that "
                         "linear means N times one worker; 0: each library's own default, all cores)")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "wandata_bench_scaling",
                    help="where the generated sources are kept between runs (default: in the temp folder)")
    ap.add_argument("--work", type=Path, help="where datasets are written (default: a temporary folder)")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args()
    n_sources = args.sources or max(4, 2 * max(args.workers))
    cores = os.cpu_count() or 1
    src = sources(args.cache, n_sources, args.resolution, args.seconds, jobs=cores)
    video_s = n_sources * args.seconds
    # A CPU-only measure: the shot model (if any) on the CPU, as on a host without a GPU.
    extra = ["--detector", args.detector] + ([] if args.detector in ("adaptive", "none") else ["--device", "cpu"])
    extra += ["--threads", str(args.threads)]
    work = Path(tempfile.mkdtemp(prefix="wandata_scaling_", dir=args.work))
    rows = []
    try:
        for engine in args.engines:
            base = None
            for n in sorted(args.workers):
                if engine == "ray":
                    head = RayHead(CPUS_PER_TASK * n)
                    try:
                        wall, summary = run_ingest(src, work / "ds", engine, n, extra, head.env, head.address)
                    finally:
                        head.stop()
                else:
                    wall, summary = run_ingest(src, work / "ds", engine, n, extra)
                assert summary["processed"] == n_sources and not summary["sources"].get("failed"), summary
                thr = video_s / wall
                base = base or (thr if n == 1 else None)
                speedup = thr / base if base else float("nan")
                row = {"engine": engine, "workers": n, "wall_s": round(wall, 2),
                       "sources_per_s": round(n_sources / wall, 3), "video_s_per_s": round(thr, 2),
                       "speedup": round(speedup, 2), "pct_linear": round(100 * speedup / n, 1),
                       "clips": summary["clips"].get("kept", 0), "threads": args.threads,
                       "cores_busy": round(summary["_busy_s"] / wall, 2)}
                rows.append(row)
                print(f"  {engine:5s} x{n:<3d} {wall:7.1f} s  {row['video_s_per_s']:6.2f} video-s/s  "
                      f"{row['pct_linear']:5.1f} % of linear, {row['cores_busy']:.1f} cores busy", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    machine = f"{platform.node()} {platform.machine()}, {cores} cores, Python {platform.python_version()}"
    print(f"\n{n_sources} sources x {args.seconds:g} s {args.resolution} {FPS} fps, --detector {args.detector} "
          f"(CPU), --threads {args.threads}; {machine}")
    print(f"{'engine':6s} {'workers':>7s} {'wall s':>8s} {'src/s':>7s} {'video s/s':>10s} {'speed-up':>9s} "
          f"{'% linear':>9s} {'cores busy':>10s} {'clips':>6s}")
    for r in rows:
        print(f"{r['engine']:6s} {r['workers']:7d} {r['wall_s']:8.1f} {r['sources_per_s']:7.3f} "
              f"{r['video_s_per_s']:10.2f} {r['speedup']:9.2f} {r['pct_linear']:9.1f} {r['cores_busy']:10.1f} "
              f"{r['clips']:6d}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "sources": n_sources, "seconds": args.seconds,
                                         "resolution": args.resolution, "detector": args.detector,
                                         "threads": args.threads,
                                         "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
