#!/usr/bin/env python
"""The default CPU path against its floor, wall and CPU time, median of N runs.

    python bench/ingest_speed.py [N]        # N runs (default 3) on the 2-minute 1080p source

Uses bench/ingest.py's own pieces: its cached camera-like 1080p 24 fps source (made on first
use), ``run_wandata`` (``wandata ingest`` with the default detector, into an empty dataset) and
``run_floor`` (ffmpeg decoding the source + encoding the same output frames). Besides wall time
it adds up the child processes' CPU time (user + sys), which a busy machine disturbs much less
than wall time: on a shared machine read the CPU ratio, on a quiet one both.
"""
from __future__ import annotations

import importlib.util
import json
import resource
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("bench_ingest", HERE / "ingest.py")
bi = importlib.util.module_from_spec(spec)
sys.modules["bench_ingest"] = bi
spec.loader.exec_module(bi)


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


CPU = [0.0]
_timed = bi.timed


def timed(argv, ok=(0,), **kw):
    """bench/ingest.py's timer, also adding up the CPU time of what it times."""
    c0 = cpu()
    out = _timed(argv, ok=ok, **kw)
    CPU[0] += cpu() - c0
    return out


bi.timed = timed


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    cache = Path(tempfile.gettempdir()) / "wandata-bench-cache"
    src, _ = bi.source_video(cache, "1080p", 1920, 1080, 24, 120.0)
    src.read_bytes()  # warm the page cache
    work = Path(tempfile.mkdtemp(prefix="wandata-speed-"))
    rows = []
    for _ in range(n):
        shutil.rmtree(work / "ds", ignore_errors=True)
        CPU[0] = 0.0
        w = bi.run_wandata(src, work / "ds", "auto", None)
        w_cpu = CPU[0]
        CPU[0] = 0.0
        f = bi.run_floor(src, w["clips"], work, 18, "medium")
        rows.append({"wandata_s": round(w["seconds"], 1), "floor_s": round(f["seconds"], 1),
                     "wandata_cpu_s": round(w_cpu, 1), "floor_cpu_s": round(CPU[0], 1), "clips": len(w["clips"])})
        print(json.dumps(rows[-1]), flush=True)
    shutil.rmtree(work, ignore_errors=True)
    wall = statistics.median(r["wandata_s"] / r["floor_s"] for r in rows)
    cpu_ratio = statistics.median(r["wandata_cpu_s"] / r["floor_cpu_s"] for r in rows)
    print("| runs | wandata s | floor s | wall ratio (median) | CPU ratio (median) |")
    print("|---|---|---|---|---|")
    print(f"| {n} | {' / '.join(str(r['wandata_s']) for r in rows)} | {' / '.join(str(r['floor_s']) for r in rows)} "
          f"| {wall:.2f}x | {cpu_ratio:.2f}x |")


if __name__ == "__main__":
    main()
