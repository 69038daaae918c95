"""Duplicate detection at scale (issue 17): pHash near-duplicates and CLIP semantic duplicates on
synthetic datasets of 10k, 100k and 1M clips, and CLIP image-embedding throughput on this CPU.

    python bench/dedup_scale.py                       # all sizes, prints a table (docs/quality.md)
    python bench/dedup_scale.py --sizes 10000 --no-throughput --no-phash
    python bench/dedup_scale.py --clip-sets clustered,uniform --sizes 100000

Synthetic data, made here. pHash: each clip has 5 random 64-bit frame hashes (as ingest stores)
in one bucket, from its own source and shot (the worst case: nothing is excluded by bucket or
shot); 5 % of the clips are planted copies of an earlier clip, every frame 0-4 bits away, frames
shuffled. The old all-pairs pHash code runs at 2,000 clips only and is extrapolated as n^2.

CLIP embeddings, 512 dims (ViT-B-32's size), unit rows held as float16:
* ``clustered`` (the default): a mixture of 4 sqrt(n) centres (4,000 at 1M) with lognormal
  weights, each centre 0.75 of a shared direction plus 0.66 of its own (real CLIP embeddings
  share a mean direction: two unrelated clips have cosine ~0.4 here, as with ViT-B-32), rows
  spread around their centre by Gaussian noise of norm 0.3-0.9 (2 % of the centres tight,
  0.18-0.27: a static scene filmed many times, whose rows pass cosine 0.95 among themselves);
  then 2 % of the clips get 1-4 planted copies each (5 % of all rows) at cosine 0.95-0.99 to
  their original.
* ``uniform``: random unit rows (no clusters, the worst case for a partition) plus the same
  5 % of planted copies.

Every figure is measured in a fresh child process: wall time of the dedup call (the pair
search, then the grouping), the child's CPU time over it (cores busy: at most 2 here), the
load average around it, and the child's peak RSS (ru_maxrss, synthetic data included) taken
right after it. Recall is the share of the pairs at or above the bound that the search returns:
against every pair (the exact path, timed) up to ``--exact-upto`` clips; above, against the
exact neighbours of ``--queries`` random clips (faiss IndexFlatIP range search over all rows in
chunks), counted over the pairs that involve a sampled clip. Precision: every reported pair is
recomputed against the bound (``_verified``), and at exact sizes the bench checks none is extra.
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


def _planted(rng, out: np.ndarray, originals: np.ndarray, copies: np.ndarray) -> None:
    """Rows ``copies`` become copies of rows ``originals`` at cosine 0.95-0.99 to them."""
    for lo in range(0, len(copies), 65536):
        x = out[originals[lo:lo + 65536]].astype(np.float32)
        u = rng.standard_normal(x.shape, dtype=np.float32)
        u -= np.einsum("ij,ij->i", u, x)[:, None] * x
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        c = rng.uniform(0.95, 0.99, len(x)).astype(np.float32)[:, None]
        v = c * x + np.sqrt(1 - c * c) * u
        out[copies[lo:lo + 65536]] = v / np.linalg.norm(v, axis=1, keepdims=True)


def embeddings(n: int, seed: int = 0, kind: str = "clustered"):
    """(n, DIM) float16 unit rows and the planted (original, copy) pairs; the module docstring
    says how they are made."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, DIM), np.float16)
    if kind == "uniform":
        for lo in range(0, n, 65536):
            v = rng.standard_normal((min(65536, n - lo), DIM), dtype=np.float32)
            out[lo:lo + len(v)] = v / np.linalg.norm(v, axis=1, keepdims=True)
        copies = rng.choice(np.arange(n // 10, n), int(PLANT * n), replace=False)
        originals = rng.integers(0, n // 10, len(copies))   # originals are never copies
    else:
        k = max(8, int(4 * np.sqrt(n)))
        shared = rng.standard_normal(DIM).astype(np.float32)
        shared /= np.linalg.norm(shared)
        own = rng.standard_normal((k, DIM)).astype(np.float32)
        own /= np.linalg.norm(own, axis=1, keepdims=True)
        centres = 0.75 * shared + 0.66 * own
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        spread = rng.uniform(0.3, 0.9, k).astype(np.float32)
        tight = rng.random(k) < 0.02
        spread[tight] = rng.uniform(0.18, 0.27, int(tight.sum()))
        weight = rng.lognormal(0, 1.0, k)
        label = rng.choice(k, n, p=weight / weight.sum())
        for lo in range(0, n, 65536):
            lab = label[lo:lo + 65536]
            v = centres[lab] + spread[lab, None] * rng.standard_normal((len(lab), DIM), dtype=np.float32) / np.sqrt(DIM)
            out[lo:lo + len(v)] = v / np.linalg.norm(v, axis=1, keepdims=True)
        chosen = rng.choice(n // 10, int(0.02 * n), replace=False)    # originals are never copies
        originals = np.repeat(chosen, rng.integers(1, 5, len(chosen)))
        copies = rng.choice(np.arange(n // 10, n), len(originals), replace=False)
    _planted(rng, out, originals, copies)
    return out, np.stack([originals, copies], 1)


def sampled_truth(emb: np.ndarray, queries: np.ndarray, bound: float, chunk: int = 131072) -> np.ndarray:
    """Every pair (q, j), q a sampled row, j any other row, with cosine >= bound: exact, by a
    faiss flat inner-product range search of the queries over all rows, a chunk at a time."""
    import faiss
    q = np.ascontiguousarray(emb[queries], np.float32)
    found = []
    for lo in range(0, len(emb), chunk):
        index = faiss.IndexFlatIP(emb.shape[1])
        index.add(np.ascontiguousarray(emb[lo:lo + chunk], np.float32))
        lims, _, ids = index.range_search(q, bound - 1e-3)
        rows = np.repeat(queries, np.diff(lims).astype(np.int64))
        found.append(np.stack([rows, ids.astype(np.int64) + lo], 1))
    pairs = np.concatenate(found)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    # the same float32 dot product as the search's own check decides the bound
    sims = np.einsum("ij,ij->i", emb[pairs[:, 0]].astype(np.float32), emb[pairs[:, 1]].astype(np.float32))
    pairs = pairs[sims >= bound]
    return np.unique(np.stack([pairs.min(1), pairs.max(1)], 1), axis=0)


def _keys(pairs: np.ndarray, n: int) -> np.ndarray:
    return np.unique(pairs[:, 0].astype(np.int64) * n + pairs[:, 1])


def clip_dedup(kind: str, n: int, exact_upto: int, queries: int, bound: float = 0.95) -> dict:
    from wandata.quality import duplicates
    emb, planted = embeddings(n, kind=kind)
    clips = [Clip(i, []) for i in range(n)]
    seen = {}
    search = duplicates.similar_pairs

    def spy(*args, **kwargs):    # the pairs the grouping received, and the search's own time
        t0 = time.perf_counter()
        seen["pairs"] = search(*args, **kwargs)
        seen["search_s"] = time.perf_counter() - t0
        return seen["pairs"]

    duplicates.similar_pairs = spy
    load0 = os.getloadavg()[0]
    cpu0 = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    t = time.perf_counter()
    found = duplicates.find_semantic_duplicates(clips, emb, bound, "sharpest")
    secs = time.perf_counter() - t
    cpu = sum(resource.getrusage(resource.RUSAGE_SELF)[:2]) - cpu0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    load1 = os.getloadavg()[0]
    duplicates.similar_pairs = search
    pairs = seen["pairs"]
    # a planted (original, copy) counts when both clips ended in a duplicate group
    grouped = {int(c.clip_id[1:]) for c, *_ in found} | {int(k.clip_id[1:]) for _, k, *_ in found}
    planted_found = sum(int(a) in grouped and int(b) in grouped for a, b in planted)
    out = {"kind": f"clip_{kind}", "n": n, "seconds": round(secs, 1), "search_s": round(seen["search_s"], 1),
           "cores_busy": round(cpu / secs, 2), "load": [round(load0, 1), round(load1, 1)],
           "peak_rss_gib": round(rss, 2), "pairs": len(pairs), "dropped": len(found),
           "planted": len(planted), "planted_found": planted_found}
    got = _keys(pairs, n)
    if n <= exact_upto:
        t = time.perf_counter()
        truth = duplicates.similar_pairs(emb, bound, exact_limit=n)    # every pair
        out["exact_s"] = round(time.perf_counter() - t, 1)
        want = _keys(truth, n)
        out["recall"] = round(float(np.isin(want, got).mean()) if len(want) else 1.0, 5)
        out["extra"] = int((~np.isin(got, want)).sum())
        out["recall_of"] = f"all {len(want):,} pairs"
        # the verdicts as the exact pairs would give them
        duplicates.similar_pairs = lambda *a, **k: truth
        same = duplicates.find_semantic_duplicates(clips, emb, bound, "sharpest")
        duplicates.similar_pairs = search
        out["same_drops"] = [(c.clip_id, k.clip_id) for c, k, *_ in same] == [(c.clip_id, k.clip_id) for c, k, *_ in found]
    else:
        sample = np.sort(np.random.default_rng(1).choice(n, min(n, queries), replace=False))
        t = time.perf_counter()
        truth = sampled_truth(emb, sample, bound)
        out["truth_s"] = round(time.perf_counter() - t, 1)
        want = _keys(truth, n)
        # the reported pairs that touch a sampled clip, against the truth for those clips
        touch = pairs[np.isin(pairs[:, 0], sample) | np.isin(pairs[:, 1], sample)]
        mine = _keys(touch, n) if len(touch) else np.empty(0, np.int64)
        out["recall"] = round(float(np.isin(want, mine).mean()) if len(want) else 1.0, 5)
        out["extra"] = int((~np.isin(mine, want)).sum())
        out["recall_of"] = f"{len(want):,} pairs of {len(sample):,} sampled clips"
    return out


def one(kind: str, n: int, exact_upto: int = 100_000, queries: int = 10_000) -> dict:
    from wandata.quality import duplicates
    if kind.startswith("clip_"):
        return clip_dedup(kind[5:], n, exact_upto, queries)
    clips, planted = phash_clips(n)
    f = duplicates.find_duplicates if kind == "phash" else duplicates.find_duplicates_all_pairs
    t = time.perf_counter()
    found = f(clips, 6)
    secs = time.perf_counter() - t
    extra = {"found": len(found), "planted": planted}
    if kind == "phash" and n <= 2000:
        extra["same_as_all_pairs"] = [(c.clip_id, k.clip_id, d) for c, k, d in found] == \
            [(c.clip_id, k.clip_id, d) for c, k, d in duplicates.find_duplicates_all_pairs(clips, 6)]
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


def child(kind: str, n: int, exact_upto: int = 100_000, queries: int = 10_000) -> dict:
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, __file__, "--one", kind, str(n), "--exact-upto", str(exact_upto),
                          "--queries", str(queries)], capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        return {"kind": kind, "n": n, "error": out.stderr.strip().splitlines()[-1:]}
    row = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps(row), flush=True)    # each row as it comes: a 1M run takes minutes
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--old-at", type=int, default=2000, help="clips for the all-pairs reference")
    ap.add_argument("--no-throughput", action="store_true")
    ap.add_argument("--no-phash", action="store_true", help="CLIP dedup only")
    ap.add_argument("--clip-sets", default="clustered", help="clustered, uniform or both (comma-separated)")
    ap.add_argument("--exact-upto", type=int, default=100_000,
                    help="up to this many clips, recall against every pair (the exact search, timed)")
    ap.add_argument("--queries", type=int, default=10_000, help="above --exact-upto: clips sampled for recall")
    ap.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one[0], int(a.one[1]), a.exact_upto, a.queries)))
        return
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"python {platform.python_version()}, numpy {np.__version__}")
    sizes = [int(s) for s in a.sizes.split(",")]
    sets = [s for s in a.clip_sets.split(",") if s]
    for s in sets:
        if s not in ("clustered", "uniform"):
            ap.error(f"--clip-sets: unknown set {s!r}: clustered or uniform")
    rows, clip_rows = [], []
    old = None
    if not a.no_phash:
        old = child("phash_old", a.old_at)
        rows += [old, child("phash", a.old_at)]
    for n in sizes:
        if not a.no_phash:
            rows.append(child("phash", n))
        for s in sets:
            clip_rows.append(child(f"clip_{s}", n, a.exact_upto, a.queries))
    if rows:
        print("\n| what | clips | seconds | peak RSS GiB | found / planted | note |")
        print("|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['kind']} | {r['n']:,} | failed: {r['error']} | | | |")
            continue
        note = ""
        if r["kind"] == "phash_old":
            note = "all pairs (old code), measured"
        elif "same_as_all_pairs" in r:
            note = f"index; verdicts identical to all pairs: {r['same_as_all_pairs']}"
        else:
            note = "index (multi-index hashing)"
        print(f"| {r['kind']} | {r['n']:,} | {r['seconds']} | {r['peak_rss_gib']} | "
              f"{r['found']:,} / {r['planted']:,} | {note} |")
    if clip_rows:
        print("\n| CLIP set | clips | dedup s (search) | cores busy | load avg | peak RSS GiB | pairs | recall | "
              "extra | planted grouped | reference |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in clip_rows:
        if "error" in r:
            print(f"| {r['kind']} | {r['n']:,} | failed: {r['error']} | | | | | | | | |")
            continue
        ref = (f"exact {r['exact_s']} s, same drops: {r['same_drops']}" if "exact_s" in r
               else f"sampled truth {r['truth_s']} s")
        print(f"| {r['kind'][5:]} | {r['n']:,} | {r['seconds']} ({r['search_s']}) | {r['cores_busy']} | "
              f"{r['load'][0]} -> {r['load'][1]} | {r['peak_rss_gib']} | {r['pairs']:,} | {r['recall']:.3%} of "
              f"{r['recall_of']} | {r['extra']} | {r['planted_found']:,} / {r['planted']:,} | {ref} |")
    if old and old.get("seconds"):
        for n in sizes:
            print(f"all-pairs pHash at {n:,} clips, extrapolated as n^2 from {old['n']:,}: "
                  f"{old['seconds'] * (n / old['n']) ** 2 / 3600:,.2f} h (not run)")
    if not a.no_throughput:
        t = throughput()
        print(f"\nCLIP image embedding on CPU: {t['model']}, batch {t['batch']}, {t['threads']} threads: "
              f"{t['frames_per_s']} frames/s ({t['clips_per_s']} clips/s at 3 frames a clip; "
              "preprocessing of 832x480 frames included, decoding not)")


if __name__ == "__main__":
    main()
