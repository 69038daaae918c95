"""The duplicate filters: near-identical clips across the whole dataset (docs/quality.md).

Two clips match when their perceptual hashes (``scores.phash``) are close. Unlike the other
filters it compares clips with each other, so it runs once every source is done: at the end of
an ingest (``drop_duplicates``) and over the whole preview in ``wandata plan``.

Comparing every pair is quadratic (about 0.3 h for 10,000 clips of one bucket in pure Python),
so candidates come from an index over the individual frame hashes (``near_hash_pairs``,
multi-index hashing) and only those are compared exactly; the verdicts are the all-pairs ones
(tests/test_duplicates_index.py). ``semantic_groups`` does the same for CLIP embeddings with a
vector index (faiss), and ``keep_best`` chooses the survivor of such a group by a stated rule.
"""
from __future__ import annotations

import itertools
import math
import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from wandata.dataset.reasons import Reason

_BITS = 64


def hash_distance(a: list[str], b: list[str]) -> int:
    """Median over a's frames of the Hamming distance to b's closest frame: two windows of the
    same material a few frames out of phase still match."""
    if not a or not b:
        return 64
    d = [min(bin(int(x, 16) ^ int(z, 16)).count("1") for z in b) for x in a]
    return int(np.median(d))


def find_duplicates_all_pairs(clips, max_distance: int) -> list[tuple[object, object, int]]:
    """The reference: every kept clip against every earlier kept clip of its bucket. Kept for
    the tests and the benchmark, which check that ``find_duplicates`` agrees with it."""
    kept: dict[str, list] = {}
    out = []
    for c in clips:
        if c.status != "kept" or not c.phash:
            continue
        twins = [(hash_distance(c.phash, k.phash), k) for k in kept.get(c.bucket, [])
                 if (k.source_id, k.shot_index) != (c.source_id, c.shot_index)]
        near = min(twins, key=lambda t: t[0], default=None)
        if near is not None and near[0] <= max_distance:
            out.append((c, near[1], near[0]))
        else:
            kept.setdefault(c.bucket, []).append(c)
    return out


def _plan(n: int, max_distance: int) -> tuple[int, int] | None:
    """(chunks m, chunks that must agree s) for multi-index hashing of n hashes, or None when
    comparing all pairs is cheaper. Split 64 bits into m chunks: two hashes within distance k
    differ in at most k chunks, so at least s = m - k chunks are equal, and every such pair
    shares the key made of one of the C(m, s) choices of s chunks. More chunks make keys longer
    (fewer random collisions) but the choices more numerous; take the cheapest by expected work:
    per choice one sort of n keys plus the colliding pairs, n^2 / 2^(key bits + 1)."""
    best, plan = n * n / 2 / 16, None   # all pairs, vectorised: ~16 per sort element
    for m in range(max_distance + 1, _BITS + 1):
        s = m - max_distance
        key_bits = _BITS * s // m      # the shortest choice's key (chunks differ by one bit)
        choices = math.comb(m, s)
        if choices > 5000:
            continue
        cost = choices * (n * max(1.0, math.log2(max(n, 2))) + 8 * n * n / 2 ** (key_bits + 1))
        if cost < best:
            best, plan = cost, (m, s)
    return plan


def _pairs_in_runs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions (i, j), i < j, of equal values in the sorted ``keys``. Work is the number of
    pairs: a position leaves once the value after it at offset t differs (sorted, so it stays
    different for every larger t)."""
    n = len(keys)
    a_out, b_out = [], []
    active = np.arange(n - 1, dtype=np.int64)
    t = 1
    while len(active):
        active = active[active + t < n]
        active = active[keys[active + t] == keys[active]]
        if len(active):
            a_out.append(active)
            b_out.append(active + t)
        t += 1
    if not a_out:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(a_out), np.concatenate(b_out)


def near_hash_pairs(hashes: np.ndarray, max_distance: int) -> np.ndarray:
    """Every pair (i, j), i < j, of 64-bit hashes within ``max_distance`` bits, as an (n, 2)
    int64 array, exactly (no pair is missed): multi-index hashing (``_plan``), or all pairs in
    blocks where that is cheaper. Equal values are found once (``np.unique``), so footage that
    hashes alike frame after frame costs its pairs, not a pass per chunk choice."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    values, inverse = np.unique(hashes, return_inverse=True)
    u = len(values)
    found = []
    plan = _plan(u, max_distance)
    if plan is None:
        block = max(1, 2_000_000 // max(u, 1))
        for lo in range(0, u, block):
            d = np.bitwise_count(values[lo:lo + block, None] ^ values[None, :])
            i, j = np.nonzero(d <= max_distance)
            sel = j > i + lo
            found.append(np.stack([i[sel] + lo, j[sel]], 1))
    else:
        m, s = plan
        edges = [round(k * _BITS / m) for k in range(m + 1)]
        chunks = [((values >> np.uint64(edges[k])) & np.uint64((1 << (edges[k + 1] - edges[k])) - 1))
                  for k in range(m)]
        idx_bits = max(1, int(u - 1).bit_length())

        def one(choice):
            key, bits = np.zeros(u, np.uint64), 0
            for k in choice:
                key = (key << np.uint64(edges[k + 1] - edges[k])) | chunks[k]
                bits += edges[k + 1] - edges[k]
            if bits + idx_bits <= 64:   # key and position in one word: a plain sort, no argsort
                packed = np.sort((key << np.uint64(idx_bits)) | np.arange(u, dtype=np.uint64))
                del key
                a, b = _pairs_in_runs(packed >> np.uint64(idx_bits))
                order = (packed & np.uint64((1 << idx_bits) - 1)).astype(np.int64)
            else:
                order = np.argsort(key, kind="stable")
                a, b = _pairs_in_runs(key[order])
            a, b = order[a], order[b]
            close = np.bitwise_count(values[a] ^ values[b]) <= max_distance
            a, b = a[close], b[close]
            return np.stack([np.minimum(a, b), np.maximum(a, b)], 1)

        # numpy's sort and arithmetic release the GIL: threads use the cores without copies.
        with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as pool:
            found = list(pool.map(one, itertools.combinations(range(m), s)))
    pairs = np.unique(np.concatenate(found), axis=0) if found else np.empty((0, 2), np.int64)
    # Back from distinct values to positions: every position of one value with every position
    # of the other, and positions sharing a value with each other.
    first = np.argsort(inverse, kind="stable")
    starts = np.searchsorted(inverse[first], np.arange(u + 1))
    out = []
    for va, vb in pairs:
        pa, pb = first[starts[va]:starts[va + 1]], first[starts[vb]:starts[vb + 1]]
        out.extend((min(x, y), max(x, y)) for x in pa for y in pb)
    for v in np.nonzero(np.diff(starts) > 1)[0]:
        out.extend(itertools.combinations(sorted(first[starts[v]:starts[v + 1]]), 2))
    return np.array(sorted(set(out)), np.int64).reshape(-1, 2)


def _hash_ints(phash: list[str]) -> list[int]:
    return [int(x, 16) for x in phash]


def find_duplicates(clips, max_distance: int) -> list[tuple[object, object, int]]:
    """``(clip, kept twin, distance)`` for every kept clip that repeats an earlier kept one.

    Clips are taken in the order given (the manifest's: source path, shot, window) and the
    first of a group is kept, so reruns and added sources never change which copy survives.
    Only clips of the same bucket are compared: a portrait and a landscape crop of the same
    material are different training examples. Windows of one shot are never compared: a slow
    take looks alike from window to window, and those windows were chosen on purpose.

    Same verdicts as ``find_duplicates_all_pairs``, from candidates only: a clip whose median
    distance is at most k has at least one frame within k of a frame of its twin (the median is
    at least the minimum), so pairs sharing no such frame pair cannot match and are skipped.
    Among the candidates the nearest earlier kept clip wins, ties to the earliest, as before."""
    clips = [c for c in clips if c.status == "kept" and c.phash]
    owner, flat = [], []
    for i, c in enumerate(clips):
        hs = _hash_ints(c.phash)
        flat.extend(hs)
        owner.extend([i] * len(hs))
    if not flat:
        return []
    owner = np.array(owner, np.int64)
    pairs = near_hash_pairs(np.array(flat, np.uint64), max_distance)
    earlier: dict[int, set[int]] = defaultdict(set)
    if len(pairs):
        a, b = owner[pairs[:, 0]], owner[pairs[:, 1]]
        for x, y in zip(a.tolist(), b.tolist()):
            if x != y:
                earlier[max(x, y)].add(min(x, y))
    kept = [True] * len(clips)
    out = []
    for i, c in enumerate(clips):
        best = None
        for j in sorted(earlier.get(i, ())):
            k = clips[j]
            if not kept[j] or k.bucket != c.bucket or (k.source_id, k.shot_index) == (c.source_id, c.shot_index):
                continue
            d = hash_distance(c.phash, k.phash)
            if best is None or d < best[0]:
                best = (d, k)
        if best is not None and best[0] <= max_distance:
            out.append((c, best[1], best[0]))
            kept[i] = False
    return out


# --- semantic duplicates: CLIP embeddings ---------------------------------------------------

# Up to this many clips the vector index is exact (every pair's cosine, in blocks); above it an
# inverted-file index (faiss IVF, vectors held as float16) searches the few cells nearest each
# clip, which finds near-identical vectors (same cell) at a fraction of the cost.
EXACT_LIMIT = 20_000

# How the survivor of a group is chosen: the score it maximises, and how the reason says it.
KEEP_RULES = {
    "sharpest": ("the sharpest", lambda c, a: c.sharpness, "sharpness {:g}"),
    "aesthetic": ("the most aesthetic", lambda c, a: a, "aesthetic score {:.3f}"),
    "longest": ("the longest shot", lambda c, a: c.shot_end_s - c.shot_start_s, "shot {:.2f} s"),
}


def _faiss():
    try:
        import faiss
    except ImportError:
        raise RuntimeError("faiss is not installed; install it with: pip install 'wandata[clip]'") from None
    return faiss


def similar_pairs(emb: np.ndarray, min_similarity: float, exact_limit: int = EXACT_LIMIT,
                  nprobe: int = 8) -> np.ndarray:
    """Pairs (i, j), i < j, of unit rows with cosine >= ``min_similarity``, as (n, 2) int64.
    Exact up to ``exact_limit`` rows; above, an IVF index whose candidates are then checked
    against the vectors themselves (so a pair is never reported below the bound; one split
    across two cells the search does not visit can be missed: bench/dedup_scale.py measures
    the recall on planted groups)."""
    faiss = _faiss()
    n, dim = emb.shape
    if n < 2:
        return np.empty((0, 2), np.int64)
    slack = 0.01  # float16 storage and the index's arithmetic: search a little wider, then check
    if n <= exact_limit:
        # Every pair, upper triangle by blocks, through BLAS (faiss's flat range search is not).
        x = np.ascontiguousarray(emb, np.float32)
        found = []
        for lo in range(0, n, 2048):
            sims = x[lo:lo + 2048] @ x[lo:].T
            a, b = np.nonzero(sims >= min_similarity)
            sel = b > a
            found.append(np.stack([a[sel] + lo, b[sel] + lo], 1).astype(np.int64))
        return np.concatenate(found)
    else:
        nlist = int(min(65536, max(64, 2 * np.sqrt(n))))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, faiss.ScalarQuantizer.QT_fp16,
                                              faiss.METRIC_INNER_PRODUCT)
        index.cp.niter = 10   # near-identical vectors share a cell with any rough clustering
        sample = np.random.default_rng(0).choice(n, min(n, 32 * nlist), replace=False)
        index.train(np.ascontiguousarray(emb[np.sort(sample)], np.float32))
        index.nprobe = nprobe
    step = 65536
    for lo in range(0, n, step):
        index.add(np.ascontiguousarray(emb[lo:lo + step], np.float32))
    found = []
    for lo in range(0, n, 16384):
        q = np.ascontiguousarray(emb[lo:lo + 16384], np.float32)
        lims, _, ids = index.range_search(q, float(min_similarity) - slack)
        rows = np.repeat(np.arange(lo, lo + len(q)), np.diff(lims).astype(np.int64))
        sel = ids > rows
        a, b = rows[sel], ids[sel].astype(np.int64)
        if len(a):
            sims = np.einsum("ij,ij->i", emb[a].astype(np.float32), emb[b].astype(np.float32))
            ok = sims >= min_similarity
            found.append(np.stack([a[ok], b[ok]], 1))
    return np.concatenate(found) if found else np.empty((0, 2), np.int64)


def groups_of(n: int, pairs: np.ndarray) -> list[list[int]]:
    """Connected components (union-find) of the pairs, each of 2+ members, members in order."""
    parent = np.arange(n)

    def root(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs.tolist():
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    members: dict[int, list[int]] = defaultdict(list)
    for x in np.unique(pairs).tolist():
        members[root(x)].append(x)
    return [sorted(m) for m in members.values() if len(m) > 1]


def find_semantic_duplicates(clips: list, emb: np.ndarray, min_similarity: float, rule: str = "sharpest",
                             aesthetic: np.ndarray | None = None, exact_limit: int = EXACT_LIMIT):
    """``(clip, kept clip, similarity to it, group size, why kept)`` for every kept clip whose
    CLIP embedding (row of ``emb``) is within ``min_similarity`` of another's, grouped
    transitively; each group keeps its best clip by ``rule`` (``KEEP_RULES``; ties: the first
    in manifest order). As for perceptual hashes, only clips of one bucket are compared and
    windows of one shot are not linked with each other."""
    if rule not in KEEP_RULES:
        raise ValueError(f"unknown keep rule {rule!r}: one of {', '.join(KEEP_RULES)}")
    if rule == "aesthetic" and aesthetic is None:
        raise ValueError("the aesthetic keep rule needs aesthetic scores")
    pairs = similar_pairs(emb, min_similarity, exact_limit)
    if len(pairs):
        same = np.array([clips[a].bucket == clips[b].bucket
                         and (clips[a].source_id, clips[a].shot_index) != (clips[b].source_id, clips[b].shot_index)
                         for a, b in pairs.tolist()], bool)
        pairs = pairs[same]
    what, score, shown = KEEP_RULES[rule]
    out = []
    for g in groups_of(len(clips), pairs):
        values = [score(clips[i], None if aesthetic is None else float(aesthetic[i])) for i in g]
        best = g[int(np.argmax(values))]   # argmax: the first of equals, i.e. manifest order
        why = f"{what} of {len(g)} ({shown.format(max(values))})"
        for i in g:
            if i != best:
                sim = float(np.dot(emb[i].astype(np.float32), emb[best].astype(np.float32)))
                out.append((clips[i], clips[best], sim, len(g), why))
    return out


def mark_semantic_duplicate(c, kept, similarity: float, size: int, why: str, bound: float, rule: str) -> None:
    # The file stays (and the row lists it): `wandata review` can keep a dropped clip anyway.
    c.status, c.reason_code = "dropped", Reason.semantic_duplicate.value
    c.reason = "dropped by CLIP dedup: " + Reason.semantic_duplicate.message(
        twin=kept.path or kept.clip_id, twin_id=kept.clip_id, similarity=similarity, size=size,
        bound=bound, why=why, rule=rule)


def drop_duplicates(manifest, dataset, settings) -> int:
    """Near-duplicates across the whole dataset: each one's file is deleted and its row says
    which clip was kept instead. Only the engine sees every source, so ``ingest.run.ingest``
    calls this once the sources are done."""
    dups = find_duplicates(manifest.all_clips(), settings.max_duplicate_distance)
    for c, twin, d in dups:
        (dataset / c.path).unlink(missing_ok=True)
        mark_duplicate(c, twin, d, settings)
    if dups:
        manifest.save()
    return len(dups)


def mark_duplicate(c, twin, distance: int, settings) -> None:
    c.status, c.path, c.reason_code = "dropped", "", Reason.near_duplicate
    c.reason = "dropped by quality filter " + Reason.near_duplicate.message(
        distance=distance, bound=settings.max_duplicate_distance, twin=twin.path or twin.clip_id)
