"""Bookkeeping at scale (issue 17 point 3): manifest, report and export on 10k, 100k and 1M clips.

Builds synthetic datasets (columns as ingest writes them: 81 source frame indexes and 4
perceptual hashes per clip, 20 clips per source, a settings JSON per source) whose clips point
at a few tiny real MP4 files made with ffmpeg, so the report decodes real video through its real
code path. Then times, each step in its own process (peak memory = that process's max RSS):

* append: one more source (20 clips) recorded into the dataset: the old whole rewrite
  (``Manifest.save``) against a part (``Manifest.append``; mean and worst of 20 appends, merges
  included);
* read: ``Manifest(dataset)`` (every column, as ingest opens it), ``Manifest.reader``
  (records without per-frame columns) and ``read_clips`` (the columnar read export and report
  use: every clip column but the per-frame ones, review decisions applied, kept clips
  filtered), with the parts of the appends;
* report: ``wandata report`` (``report.html.write``) run twice: first run (thumbnail strips made:
  one per distinct picture) and second run (strips reused);
* export: ``wandata export --format csv`` (``export.run.export``).

At the sizes in ``--distinct`` every clip has its own decoded-pictures digest, so the first
report makes one strip per clip (the per-clip cost of thumbnails); at the others the clips
share the few files' digests (the bookkeeping without the decoding). ``wandata plan`` reads no
manifest (a dry run plans into an empty dataset), so it has no bookkeeping to time here.

    python3 bench/bookkeeping_scale.py [--sizes 10000,100000,1000000] [--distinct 10000]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))   # run from a checkout

PER_SOURCE = 20
FRAMES = 81
N_FILES = 8


def make_videos(folder: Path) -> list[str]:
    """A few tiny real clips (160x96, 17 frames); returns their paths relative to the dataset."""
    from wandata.media.tools import ffmpeg_exe
    out = []
    (folder / "clips" / "bench").mkdir(parents=True, exist_ok=True)
    for k in range(N_FILES):
        rel = f"clips/bench/{k}.mp4"
        subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i",
                        f"testsrc=size=160x96:rate=16:duration=1.0625,hue=h={k * 40}",
                        "-frames:v", "17", "-pix_fmt", "yuv420p", "-c:v", "libx264", str(folder / rel)],
                       check=True)
        out.append(rel)
    return out


def make_dataset(folder: Path, n: int, distinct: bool) -> None:
    """Write DATASET/manifest.parquet with ``n`` clip rows, built column by column."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from wandata.dataset.manifest import MANIFEST_NAME, SCHEMA

    videos = make_videos(folder)
    rng = np.random.default_rng(0)
    n_src = max(1, n // PER_SOURCE)
    settings = json.dumps({"profile": "wan2.1-t2v-14b", "frames": FRAMES, "fps": 16.0, "detector": "cascade",
                           "buckets": [[832, 480], [480, 832], [624, 624]], "filters": ["blur", "dark", "static"],
                           "notes": "x" * 900})
    src_paths = [f"/data/raw/shoot_{i // 1000:03d}/take_{i:07d}.mp4" for i in range(n_src)]
    src_ids = [f"{i:016x}" for i in range(n_src)]
    clip_src = np.arange(n) // PER_SOURCE
    clip_src = np.minimum(clip_src, n_src - 1)
    status = np.where(rng.random(n) < 0.8, "kept", "dropped")
    file_of = np.arange(n) % N_FILES
    digests = ([f"{i:032x}" for i in range(n)] if distinct else [f"{k:032x}" for k in file_of])
    n_rows = n_src + n
    # Rows as Manifest.rows() orders them: each source's row, then its clips.
    starts = np.searchsorted(clip_src, np.arange(n_src))
    counts = np.bincount(clip_src, minlength=n_src)
    src_row_pos = starts + np.arange(n_src)
    is_src = np.zeros(n_rows, bool)
    is_src[src_row_pos] = True
    clip_row_pos = np.nonzero(~is_src)[0]

    def scatter(src_vals, clip_vals, typ):
        out = [None] * n_rows
        for p, v in zip(src_row_pos.tolist(), src_vals):
            out[p] = v
        for p, v in zip(clip_row_pos.tolist(), clip_vals):
            out[p] = v
        return pa.array(out, typ)

    def numeric(src_vals, clip_vals, typ):
        arr = np.zeros(n_rows, dtype=np.float64 if typ == pa.float64() else np.int64)
        mask = np.ones(n_rows, bool)
        if src_vals is not None:
            arr[src_row_pos] = src_vals
        else:
            mask[src_row_pos] = False
        if clip_vals is not None:
            arr[clip_row_pos] = clip_vals
        else:
            mask[clip_row_pos] = False
        return pa.array(arr.astype(typ.to_pandas_dtype()) if typ != pa.bool_() else arr.astype(bool),
                        typ, mask=~mask)

    clip_ids = [f"{i:016x}" for i in range(n)]
    cs = clip_src.tolist()
    table = {}
    for f in SCHEMA:
        name, typ = f.name, f.type
        if name == "kind":
            table[name] = scatter(["source"] * n_src, ["clip"] * n, typ)
        elif name == "path":
            table[name] = scatter(src_paths, [videos[k] for k in file_of.tolist()], typ)
        elif name == "source_path":
            table[name] = scatter([None] * n_src, [src_paths[s] for s in cs], typ)
        elif name == "source_id":
            table[name] = scatter(src_ids, [src_ids[s] for s in cs], typ)
        elif name == "clip_id":
            table[name] = scatter([None] * n_src, clip_ids, typ)
        elif name == "status":
            table[name] = scatter(["kept"] * n_src, status.tolist(), typ)
        elif name == "reason_code":
            table[name] = scatter([""] * n_src, ["" if s == "kept" else "filter_blur" for s in status], typ)
        elif name == "reason":
            table[name] = scatter([""] * n_src, ["" if s == "kept" else "dropped by quality filter blur: "
                                                 "sharpness 12.3 < min_sharpness 40" for s in status], typ)
        elif name == "caption":
            table[name] = scatter([None] * n_src, [f"A person walks along a beach at sunset, shot {i}, "
                                                   "waves rolling in, warm light, handheld camera" for i in range(n)], typ)
        elif name == "decoded_digest":
            table[name] = scatter([None] * n_src, digests, typ)
        elif name in ("settings_json",):
            table[name] = scatter([settings] * n_src, [None] * n, typ)
        elif name == "settings_fingerprint":
            table[name] = scatter(["f" * 16] * n_src, ["f" * 16] * n, typ)
        elif name == "timings_json":
            table[name] = scatter(['{"decode": 1.2, "detect": 3.4}'] * n_src, [None] * n, typ)
        elif name == "bucket":
            table[name] = scatter([None] * n_src, ["160x96"] * n, typ)
        elif name == "orientation":
            table[name] = scatter([None] * n_src, ["landscape"] * n, typ)
        elif name == "verified_size":
            table[name] = scatter([None] * n_src, ["160x96"] * n, typ)
        elif name in ("container", "codec", "pix_fmt", "detector", "captioner"):
            table[name] = scatter(["mp4" if name == "container" else "x"] * n_src,
                                  [None if name != "captioner" else "template"] * n, typ)
        elif name == "content_hash":
            table[name] = scatter([h * 4 for h in src_ids], [None] * n, typ)
        elif name == "src_frames":
            base = np.arange(FRAMES, dtype=np.int64)
            values = (np.repeat(np.arange(n, dtype=np.int64) % 1000 * 100, FRAMES) + np.tile(base, n))
            offsets = np.zeros(n_rows + 1, np.int64)
            lens = np.zeros(n_rows, np.int64)
            lens[clip_row_pos] = FRAMES
            offsets[1:] = np.cumsum(lens)
            table[name] = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))
        elif name == "phash":
            hexes = pa.array([f"{(i * 2654435761) % (1 << 64):016x}" for i in range(4 * n)])
            offsets = np.zeros(n_rows + 1, np.int64)
            lens = np.zeros(n_rows, np.int64)
            lens[clip_row_pos] = 4
            offsets[1:] = np.cumsum(lens)
            table[name] = pa.ListArray.from_arrays(pa.array(offsets), hexes)
        elif name in ("shots",):
            table[name] = scatter([[[0.0, 30.0], [30.0, 60.0]]] * n_src, [None] * n, typ)
        elif name in ("crop", "flags"):
            table[name] = scatter([[]] * n_src, [[]] * n, typ)
        elif typ == pa.string():
            table[name] = scatter([""] * n_src, [""] * n, typ)
        elif typ == pa.bool_():
            table[name] = pa.array(np.zeros(n_rows, bool))
        elif typ == pa.int64():
            vals = {"width": (1920, 160), "height": (1080, 96), "display_width": (1920, None),
                    "display_height": (1080, None), "num_frames": (2000, 17), "size_bytes": (10 ** 8, None),
                    "shot_index": (None, clip_src % 3), "window_index": (None, np.arange(n) % 7),
                    "verified_frames": (None, 17)}.get(name, (0, 0))
            table[name] = numeric(vals[0], vals[1], typ)
        elif typ == pa.float64():
            vals = {"fps": (25.0, 16.0), "duration_s": (80.0, None), "verified_fps": (None, 16.0),
                    "start_s": (None, rng.random(n) * 60), "shot_start_s": (None, 0.0), "shot_end_s": (None, 30.0),
                    "scale": (None, 0.5), "motion": (None, rng.random(n) * 10),
                    "sharpness": (None, rng.random(n) * 300), "brightness": (None, rng.random(n) * 255),
                    "contrast": (None, rng.random(n) * 80), "text": (None, rng.random(n) * 0.1)}.get(name, (0.0, 0.0))
            table[name] = numeric(vals[0], vals[1], typ)
        else:
            raise SystemExit(f"no generator for column {name} ({typ})")
    t = pa.table([table[n] for n in SCHEMA.names], schema=SCHEMA)
    pq.write_table(t, folder / MANIFEST_NAME)


# --- the steps, each run in a child process --------------------------------------------------

def _source(i: int):
    from wandata.dataset.records import ClipRecord, SourceRecord
    path = f"/data/raw/zz_appended/take_{i:07d}.mp4"
    sid = f"a{i:015x}"
    src = SourceRecord(path=path, source_id=sid, settings_json='{"profile": "wan2.1-t2v-14b"}', shots=[[0.0, 30.0]])
    clips = [ClipRecord(f"{sid}{j:04d}", sid, path, 0, j, 0.0, 30.0, num_frames=17, fps=16.0, width=160,
                        height=96, bucket="160x96", path="clips/bench/0.mp4", caption="appended",
                        src_frames=list(range(FRAMES)), phash=["0" * 16] * 4, decoded_digest="0" * 32)
             for j in range(PER_SOURCE)]
    return src, clips


def step(name: str, dataset: Path, n: int = 0, distinct: bool = False) -> dict:
    import resource
    out: dict = {}
    t0 = time.perf_counter()
    if name == "build":
        make_dataset(dataset, n, distinct)
        out["s"] = time.perf_counter() - t0
    elif name == "rewrite":
        from wandata.dataset.manifest import Manifest
        m = Manifest(dataset)
        out["load_s"] = time.perf_counter() - t0
        m.put(*_source(0))
        t1 = time.perf_counter()
        m.save()
        out["s"] = time.perf_counter() - t1
    elif name == "append":
        from wandata.dataset.manifest import Manifest
        m = Manifest(dataset)
        out["load_s"] = time.perf_counter() - t0
        times = []
        for i in range(1, 21):
            m.put(*_source(i))
            t1 = time.perf_counter()
            m.append([_source(i)[0].path])
            times.append(time.perf_counter() - t1)
        out["s"], out["max_s"] = sum(times) / len(times), max(times)
        out["parts"] = len(m._parts)
    elif name == "read":
        from wandata.dataset.manifest import Manifest
        out["clips"] = len(Manifest(dataset).all_clips())
        out["s"] = time.perf_counter() - t0
    elif name == "reader":
        from wandata.dataset.manifest import Manifest
        out["clips"] = len(Manifest.reader(dataset).all_clips())
        out["s"] = time.perf_counter() - t0
    elif name == "columns":
        from wandata.dataset import review
        from wandata.dataset.manifest import read_clips
        import pyarrow.compute as pc
        t = review.reviewed_table(dataset, read_clips(dataset))
        out["clips"], out["kept"] = len(t), len(t.filter(pc.equal(t.column("status"), "kept")))
        out["s"] = time.perf_counter() - t0
    elif name in ("report", "report2"):
        from wandata.report.html import write
        write(dataset)
        out["s"] = time.perf_counter() - t0
        files = dataset / "report_files"
        out["pages"] = sum(len(os.listdir(files / d)) for d in os.listdir(files) if d.startswith("pages-"))
        out["thumbs"] = sum(len(os.listdir(files / "thumbs" / d)) for d in os.listdir(files / "thumbs"))
    elif name == "export":
        from wandata.export.run import export
        s = export(dataset, "csv", out=dataset.parent / "export" / "metadata.csv")
        out["s"] = time.perf_counter() - t0
        out["train"] = s["train"]
    elif name == "compact":
        from wandata.dataset.manifest import compact
        out.update(compact(dataset))
        out["s"] = time.perf_counter() - t0
    out["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run_step(name: str, dataset: Path, *more: str) -> dict:
    # Every step, the build included, in a child of a small parent: Linux keeps a process's
    # peak RSS across fork and exec, so a child of a parent that built a million rows would
    # report the parent's memory as its own.
    r = subprocess.run([sys.executable, __file__, "--step", name, "--dataset", str(dataset), *more],
                       capture_output=True, text=True, cwd=ROOT)
    if r.returncode:
        raise SystemExit(f"step {name} on {dataset} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--distinct", default="10000", help="sizes where every clip has its own pictures")
    ap.add_argument("--step")
    ap.add_argument("--dataset", type=Path)
    ap.add_argument("--n", type=int, default=0, help="with --step build: clips to make")
    ap.add_argument("--distinct-pictures", action="store_true", help="with --step build: a digest per clip")
    ap.add_argument("--keep", type=Path, help="build the datasets here and leave them")
    ap.add_argument("--full-up-to", type=int, default=100000,
                    help="largest size at which the steps that load every column run (rewrite, append, read)")
    a = ap.parse_args()
    if a.step:
        print(json.dumps(step(a.step, a.dataset, a.n, a.distinct_pictures)))
        return
    distinct = {int(x) for x in a.distinct.split(",") if x}
    top = a.keep or Path(tempfile.mkdtemp(prefix="wandata-bookkeeping-"))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}, "
          f"{platform.platform()}")
    header = ("clips", "append: rewrite", "append: part (mean/max)", "read (all cols)", "read (reader)",
              "read (columns)", "report 1st", "report 2nd", "export csv", "compact")
    lines = []
    for n in [int(x) for x in a.sizes.split(",")]:
        ds = top / f"ds{n}" / "dataset"
        if ds.exists():
            shutil.rmtree(ds.parent)
        ds.mkdir(parents=True)
        built = run_step("build", ds, "--n", str(n), *(["--distinct-pictures"] if n in distinct else []))
        print(f"{n} clips: built in {built['s']:.1f} s", flush=True)
        saved = ds.parent / "manifest.orig.parquet"
        shutil.copy2(ds / "manifest.parquet", saved)
        na = {"s": float("nan"), "max_s": float("nan"), "rss_mib": float("nan"), "parts": "-"}
        r = {"rewrite": na, "append": na, "read": na}
        full = n <= a.full_up_to
        if full:
            r["rewrite"] = run_step("rewrite", ds)
            shutil.copy2(saved, ds / "manifest.parquet")   # the rest run on the original rows + parts
            r["append"] = run_step("append", ds)
        for s in (("read",) if full else ()) + ("reader", "columns", "report", "report2", "export", "compact"):
            r[s] = run_step(s, ds)
            print(f"  {s}: {r[s]}", flush=True)

        def f(x):
            return f"{x['s']:.2f} s / {x['rss_mib']:.0f} MiB"
        lines.append((f"{n:,}", f"{r['rewrite']['s']:.2f} s", f"{r['append']['s'] * 1000:.0f} / "
                      f"{r['append']['max_s'] * 1000:.0f} ms ({r['append']['parts']} parts)",
                      f(r["read"]), f(r["reader"]), f(r["columns"]),
                      f"{f(r['report'])} ({r['report']['thumbs']} strips)", f(r["report2"]), f(r["export"]),
                      f"{r['compact']['s']:.2f} s"))
        if not a.keep:
            shutil.rmtree(ds.parent)
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for ln in lines:
        print("| " + " | ".join(ln) + " |")


if __name__ == "__main__":
    main()
