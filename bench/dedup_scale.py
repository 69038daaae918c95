"""Duplicate detection at scale (issue 17): pHash near-duplicates and CLIP semantic duplicates on
synthetic datasets of 10k, 100k and 1M clips, and CLIP image-embedding throughput on this CPU.

    python bench/dedup_scale.py                       # all sizes, prints a table (docs/quality.md)
    python bench/dedup_scale.py --sizes 10000 --no-throughput

Synthetic data, made here: each clip has 5 random 64-bit frame hashes (as ingest stores) in one
bucket, from its own source and shot (the worst case: nothing is excluded by bucket or shot);
5 % of the clips are planted copies of an earlier clip, every frame 0-4 bits away, frames
shuffled. Embeddings: random unit vectors (512 dims, ViT-B-32's size, held as float16), 5 % of them
planted copies (cosine >= 0.97 to their original). Every figure is measured in a fresh child
process: wall time of the dedup call, and the child's peak RSS (ru_maxrss, including the synthetic
data it holds). The old all-pairs pHash code runs at 2,000 clips only and is extrapolated as n^2
(it compares every pair): at 10k it takes about 0.3 h.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np

FRAMES, DIM, PLANT = 5, 512, 0.05


class Clip:
    """The fields the duplicate finders read (a manifest row carries ~40 more; their cost is the
    manifest's, measured elsewhere)."""
    __slots__ = ("clip_id", "status", "phash", "bucket", "source_id", "shot_index", "sharpness",
                 "shot_start_s", "shot_end_s", "path")

    def __init__(self, i, phash):
        self.clip_id, self.status, self.phash, self.bucket = f"c{i}", "kept", phash, "832x480"
        self.source_id, self.shot_index, self.sharpness = f"s{i}", 0, float(i % 97)
        self.shot_start_s, self.shot_end_s, self.path = 0.0, 5.0, f"clips/c{i}.mp4"


def phash_clips(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 2**64, (n, FRAMES), dtype=np.uint64)
    copies = rng.choice(np.arange(n // 10, n), int(PLANT * n), replace=False)
    for i in copies:
        src = h[int(rng.integers(0, n // 10))].copy()   # originals are never copies
        for f in range(FRAMES):
            for b in rng.choice(64, int(rng.integers(0, 5)), replace=False):
                src[f] ^= np.uint64(1 << int(b))
        rng.shuffle(src)
        h[i] = src
    return [Clip(i, [f"{int(x):016x}" for x in row]) for i, row in enumerate(h)], len(copies)


def embeddings(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    out = np.empty((n, DIM), np.float16)
    for lo in range(0, n, 65536):
        v = rng.standard_normal((min(65536, n - lo), DIM), dtype=np.float32)
        out[lo:lo + len(v)] = v / np.linalg.norm(v, axis=1, keepdims=True)
    copies = rng.choice(np.arange(n // 10, n), int(PLANT * n), replace=False)
    srcs = rng.integers(0, n // 10, len(copies))   # originals are never copies
    noise = rng.standard_normal((len(copies), DIM), dtype=np.float32) * 0.006
    v = out[srcs].astype(np.float32) + noise
    out[copies] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out, set(copies.tolist())


def one(kind: str, n: int) -> dict:
    from wandata.quality import duplicates
    if kind in ("phash", "phash_old"):
        clips, planted = phash_clips(n)
        f = duplicates.find_duplicates if kind == "phash" else duplicates.find_duplicates_all_pairs
        t = time.perf_counter()
        found = f(clips, 6)
        secs = time.perf_counter() - t
        extra = {"found": len(found), "planted": planted}
        if kind == "phash" and n <= 2000:
            extra["same_as_all_pairs"] = [(c.clip_id, k.clip_id, d) for c, k, d in found] == \
                [(c.clip_id, k.clip_id, d) for c, k, d in duplicates.find_duplicates_all_pairs(clips, 6)]
    else:
        emb, planted = embeddings(n)
        clips = [Clip(i, []) for i in range(n)]
        t = time.perf_counter()
        found = duplicates.find_semantic_duplicates(clips, emb, 0.95, "sharpest")
        secs = time.perf_counter() - t
        # a planted copy is found when it lands in a group with its original (one of them stays)
        grouped = {int(c.clip_id[1:]) for c, *_ in found} | {int(k.clip_id[1:]) for _, k, *_ in found}
        extra = {"found": len(found), "planted": len(planted),
                 "recall": round(len(grouped & planted) / max(1, len(planted)), 4),
                 "groups_found": len({k.clip_id for _, k, *_ in found})}
    return {"kind": kind, "n": n, "seconds": round(secs, 2),
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2), **extra}


def throughput(model: str = "ViT-B-32", frames: int = 96, batch: int = 32) -> dict:
    import open_clip
    import torch
    from PIL import Image
    torch.manual_seed(0)
    m, _, pre = open_clip.create_model_and_transforms(model, pretrained=None)
    m.eval()
    rng = np.random.default_rng(0)
    pics = [Image.fromarray(rng.integers(0, 256, (480, 832, 3), dtype=np.uint8)) for _ in range(batch)]
    with torch.inference_mode():
        m.encode_image(torch.stack([pre(p) for p in pics[:4]]))   # warm-up
        t = time.perf_counter()
        done = 0
        while done < frames:
            m.encode_image(torch.stack([pre(p) for p in pics]))
            done += batch
    secs = time.perf_counter() - t
    return {"model": f"{model} (random weights, open_clip)", "frames": done, "batch": batch,
            "threads": torch.get_num_threads(), "frames_per_s": round(done / secs, 1),
            "clips_per_s": round(done / secs / 3, 1)}


def child(kind: str, n: int) -> dict:
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, __file__, "--one", kind, str(n)], capture_output=True, text=True,
                         env=env, check=False)
    if out.returncode != 0:
        return {"kind": kind, "n": n, "error": out.stderr.strip().splitlines()[-1:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--old-at", type=int, default=2000, help="clips for the all-pairs reference")
    ap.add_argument("--no-throughput", action="store_true")
    ap.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one[0], int(a.one[1]))))
        return
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"python {platform.python_version()}, numpy {np.__version__}")
    sizes = [int(s) for s in a.sizes.split(",")]
    rows = []
    old = child("phash_old", a.old_at)
    check = child("phash", a.old_at)
    rows.append(old)
    rows.append(check)
    for n in sizes:
        rows.append(child("phash", n))
        rows.append(child("clip", n))
    print("\n| what | clips | seconds | peak RSS GiB | found / planted | note |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['kind']} | {r['n']:,} | failed: {r['error']} | | | |")
            continue
        note = ""
        if r["kind"] == "phash_old":
            note = "all pairs (old code), measured"
        elif r["kind"] == "phash" and "same_as_all_pairs" in r:
            note = f"index; verdicts identical to all pairs: {r['same_as_all_pairs']}"
        elif r["kind"] == "phash":
            note = "index (multi-index hashing)"
        else:
            note = (f"{r['groups_found']:,} groups, recall {r['recall']:.2%}; "
                    f"{'exact' if r['n'] <= 20000 else 'IVF'} index")
        print(f"| {r['kind']} | {r['n']:,} | {r['seconds']} | {r['peak_rss_gib']} | "
              f"{r['found']:,} / {r['planted']:,} | {note} |")
    t_old, n_old = old.get("seconds"), old["n"]
    if t_old:
        for n in sizes:
            print(f"all-pairs pHash at {n:,} clips, extrapolated as n^2 from {n_old:,}: "
                  f"{t_old * (n / n_old) ** 2 / 3600:,.2f} h (not run)")
    if not a.no_throughput:
        t = throughput()
        print(f"\nCLIP image embedding on CPU: {t['model']}, batch {t['batch']}, {t['threads']} threads: "
              f"{t['frames_per_s']} frames/s ({t['clips_per_s']} clips/s at 3 frames a clip; "
              "preprocessing of 832x480 frames included, decoding not)")


if __name__ == "__main__":
    main()
