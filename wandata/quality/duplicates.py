"""The duplicate filters: near-identical clips across the whole dataset (docs/quality.md).

Two clips match when their perceptual hashes (``scores.phash``) are close. Unlike the other
filters it compares clips with each other, so it runs once every source is done: at the end of
an ingest (``drop_duplicates``) and over the whole preview in ``wandata plan``.

Comparing every pair is quadratic (about 0.3 h for 10,000 clips of one bucket in pure Python),
so candidates come from an index over the individual frame hashes (``near_hash_pairs``,
multi-index hashing) and only those are compared exactly; the verdicts are the all-pairs ones
(tests/test_duplicates_index.py). ``similar_pairs`` does the same for CLIP embeddings with
k-means cells (faiss), and ``find_semantic_duplicates`` keeps one clip of each group by a stated rule.
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

# Up to this many clips every pair's cosine is computed (blocked matrix products). Above it the
# clips are split into cells around k-means centres and pairs are looked for inside a cell only:
# among the clips whose nearest centre is the cell's, and between them and the clips near its
# border ("spilled" into it). Each cell is one matrix product, so the work runs at BLAS speed
# and grows as n^1.5 (2 sqrt(n) centres), where comparing every pair grows as n^2.
EXACT_LIMIT = 20_000
# r = sqrt(2 - 2 bound) is how far apart two unit vectors at the bound are. A clip is spilled
# into a smaller cell when a lower bound on its distance to that cell's region is at most
# REACH * r: at 1 every pair would be found (proof in ``_spills``), at quadratic cost where
# nothing is clustered. At 0.2, on the sets of tests/test_clip_dedup.py and
# bench/dedup_scale.py, it missed 6 pairs of 693,097 (a crowded 64-dim set), 1 of 5,362 on
# random rows and none elsewhere. MAX_CELLS caps the cells one clip is compared in, which bounds
# the work on unclustered rows (each lies near many borders; there 16 lost 3 of those 5,362).
REACH = 0.2
MAX_CELLS = 24
# Centres closer than MERGE * r make one cell when one of them is a crowd's (``_merged``): a
# cell whose rows lie within about CROWD * r of each other on average.
MERGE = 1.0
CROWD = 2.0
# Centres are compared with each other (k x k matrices): this bounds their memory.
MAX_CENTRES = 4096
# Candidates are taken a hair below the bound, then every one is recomputed by the same dot
# product whichever path found it (``_verified``), so both paths decide a pair identically.
_SLACK = 1e-4

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


def _f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, np.float32)


def _block_pairs(xa: np.ndarray, xb: np.ndarray, bound: float, upper: bool, rows: int = 2048,
                 cols: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """(i, j) positions with ``xa[i] . xb[j] >= bound``, in tiles small enough to stay in a
    few tens of MB; ``upper``: xa is xb, only i < j."""
    out_a, out_b = [], []
    for lo in range(0, len(xa), rows):
        first = lo if upper else 0
        for clo in range(first, len(xb), cols):
            sims = xa[lo:lo + rows] @ xb[clo:clo + cols].T
            # a 2-D nonzero costs as much as the product itself; the row maxima (one cheap
            # pass) leave the few rows that hold a hit, searched flat
            hit = np.flatnonzero(sims.max(1) >= bound)
            if not len(hit):
                continue
            flat = np.flatnonzero(sims[hit] >= bound)
            a, b = hit[flat // sims.shape[1]] + lo, flat % sims.shape[1] + clo
            if upper:
                sel = b > a
                a, b = a[sel], b[sel]
            if len(a):
                out_a.append(a)
                out_b.append(b)
    if not out_a:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(out_a), np.concatenate(out_b)


def _verified(emb: np.ndarray, pairs: np.ndarray, min_similarity: float, batch: int = 16384) -> np.ndarray:
    """The candidate pairs whose cosine, recomputed from the stored vectors in float32, reaches
    the bound: no pair below it is ever reported, whatever proposed it."""
    keep = []
    for lo in range(0, len(pairs), batch):
        p = pairs[lo:lo + batch]
        sims = np.einsum("ij,ij->i", _f32(emb[p[:, 0]]), _f32(emb[p[:, 1]]))
        keep.append(p[sims >= min_similarity])
    return np.concatenate(keep) if keep else np.empty((0, 2), np.int64)


def _unique_pairs(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """(n, 2) int64 of the distinct unordered pairs, i < j, sorted."""
    lo, hi = np.minimum(a, b).astype(np.int64), np.maximum(a, b).astype(np.int64)
    key = np.unique(lo * n + hi)
    return np.stack([key // n, key % n], 1)


def _cells(sample: np.ndarray, k: int) -> np.ndarray:
    """k unit centres by spherical k-means (faiss) on ``sample`` (float32 rows)."""
    faiss = _faiss()
    km = faiss.Kmeans(sample.shape[1], k, niter=10, spherical=True, seed=1234, verbose=False,
                      min_points_per_centroid=1, max_points_per_centroid=len(sample))
    km.train(sample)
    return _f32(km.centroids)


def _spills(emb: np.ndarray, centres: np.ndarray, gram: np.ndarray, group: np.ndarray, order: np.ndarray,
            radius: float, max_cells: int, block: int = 2048) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's nearest centre, and the cells each row is spilled into, as (home, rows,
    cells): cells before its own in ``order`` whose region may lie within ``radius`` of it,
    the nearest borders first, at most ``max_cells`` - 1 a row. ``group``: each centre's cell.

    Why: let x, y have cosine >= t, so ||x - y|| <= r = sqrt(2 - 2t) (unit rows), and let c be
    y's nearest centre, c' x's. y is at least as similar to c as to c', so y lies in the
    half-space <z, c - c'> >= 0, whose distance from x is (<x, c'> - <x, c>) / ||c - c'||.
    That distance is at most ||x - y|| <= r: a radius of r puts x in every cell holding a row
    it pairs with (the cell of c, unless it is x's own). The argument holds as well with x and
    y swapped, so one direction suffices: rows go only into cells earlier in ``order`` (the
    smaller cells: there comparing them costs least)."""
    sq = np.diag(gram)
    apart = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * gram, 1e-12))
    widest = apart.max(1)
    ct = np.ascontiguousarray(centres.T)
    home = np.empty(len(emb), np.int32)
    rows, cells = [], []
    for lo in range(0, len(emb), block):
        sims = _f32(emb[lo:lo + block]) @ ct
        own = sims.argmax(1)
        home[lo:lo + len(own)] = own
        top = sims[np.arange(len(own)), own]
        # a centre at most ``widest`` from the row's own: only those this close in similarity
        # can pass the bound, a few a row where rows are clustered
        flat = np.flatnonzero(sims >= (top - radius * widest[own] - 1e-6)[:, None])
        i, c = flat // sims.shape[1], flat % sims.shape[1]
        g = group[c]
        sel = order[g] < order[group[own[i]]]
        i, c, g = i[sel], c[sel], g[sel]
        bound = (top[i] - sims.ravel()[flat[sel]]) / apart[own[i], c]
        sel = bound <= radius
        i, g, bound = i[sel], g[sel], bound[sel]
        # one entry a (row, cell), with its nearest centre's bound; then the nearest cells
        # first, ``max_cells`` - 1 at most: both by one sort on row + cell rank + bound
        step = 4.0 * radius + 1e-9
        by = np.argsort(i * float(len(order) + 1) + g + bound / step, kind="stable")
        i, g, bound = i[by], g[by], bound[by]
        first = np.ones(len(i), bool)
        first[1:] = (i[1:] != i[:-1]) | (g[1:] != g[:-1])
        i, g, bound = i[first], g[first], bound[first]
        if len(i) and np.bincount(i).max() > max_cells - 1:
            by = np.argsort(i + bound / step, kind="stable")
            i, g = i[by], g[by]
            sel = np.arange(len(i)) - np.searchsorted(i, i, side="left") < max_cells - 1
            i, g = i[sel], g[sel]
        rows.append(i.astype(np.int64) + lo)
        cells.append(g.astype(np.int32))
    return home, np.concatenate(rows), np.concatenate(cells)


def _union(n: int, pairs):
    """Union-find over ``range(n)`` joined by ``pairs`` (index pairs); returns ``root(x)``, the
    smallest index of x's component (roots kept smallest, paths halved)."""
    parent = list(range(n))   # a list: indexing it is several times cheaper than a numpy array

    def root(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return root


def _merged(gram: np.ndarray, within: float, crowd: np.ndarray) -> np.ndarray:
    """Each centre's cell: centres closer than ``within`` share one, transitively, when one of
    the two is a crowd's (``crowd``). k-means seeded from the rows puts many centres into a
    crowd of near-duplicates (rows that mostly pair with each other: a static scene filmed many
    times) and small ones at its edge; one cell for the crowd compares its rows in one product,
    where the spill rule would miss many of the pairs across its inner borders. Diffuse
    neighbours do not merge: that would add work and find nothing."""
    k = len(gram)
    sq = np.diag(gram)
    near = (sq[:, None] + sq[None, :] - 2 * gram < within * within) & (crowd[:, None] | crowd[None, :])
    a, b = np.nonzero(np.triu(near, 1))
    root = _union(k, zip(a.tolist(), b.tolist()))
    roots = np.array([root(x) for x in range(k)])
    return np.unique(roots, return_inverse=True)[1].astype(np.int32)


def _cell_pairs(emb: np.ndarray, by_cell: np.ndarray, cell_at: np.ndarray, rows: np.ndarray,
                cells: np.ndarray, bound: float) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs, one matrix product per cell: its own rows (``by_cell[cell_at[c]:
    cell_at[c + 1]]``) against each other and against the rows spilled into it."""
    order = np.argsort(cells, kind="stable")
    spilled, spilled_at = rows[order], np.searchsorted(cells[order], np.arange(len(cell_at)))
    found_a, found_b = [], []
    for c in range(len(cell_at) - 1):
        own = by_cell[cell_at[c]:cell_at[c + 1]]
        near = spilled[spilled_at[c]:spilled_at[c + 1]]
        if not len(own):
            continue
        x = _f32(emb[own])
        a, b = _block_pairs(x, x, bound, upper=True)
        found_a.append(own[a])
        found_b.append(own[b])
        if len(near):
            a, b = _block_pairs(x, _f32(emb[near]), bound, upper=False)
            found_a.append(own[a])
            found_b.append(near[b])
    if not found_a:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(found_a), np.concatenate(found_b)


def _pairs_by_cells(emb: np.ndarray, min_similarity: float, k: int, reach: float, max_cells: int,
                    merge: float) -> np.ndarray:
    n = len(emb)
    sample = _f32(emb[np.sort(np.random.default_rng(0).choice(n, min(n, 40 * k), replace=False))])
    centres = _cells(sample, k)
    gram = centres @ centres.T
    norm2 = 1.0
    for lo in range(0, n, 65536):
        x = _f32(emb[lo:lo + 65536])
        norm2 = max(norm2, float(np.einsum("ij,ij->i", x, x).max()))
    # the stored rows are unit to float16 precision: the largest norm keeps the radius safe
    radius = math.sqrt(max(0.0, 2 * norm2 - 2 * min_similarity))
    # What the sample says of each centre's cell: its share of the rows, and how close they
    # are to the centre. Its rows lie ~sqrt(2 - 2 cosine) from it and ~sqrt(2) times that from
    # each other (high dimensions): a crowd when that is within CROWD * r.
    count, closeness = np.zeros(k), np.zeros(k)
    for lo in range(0, len(sample), 8192):
        sims = sample[lo:lo + 8192] @ centres.T
        near = sims.argmax(1)
        count += np.bincount(near, minlength=k)
        closeness += np.bincount(near, weights=sims[np.arange(len(near)), near], minlength=k)
    closeness /= np.maximum(count, 1)
    crowd = (count > 1) & (2 * (2 - 2 * closeness) <= (CROWD * radius) ** 2)
    group = _merged(gram, merge * radius, crowd)
    # rows are spilled into smaller cells only (``_spills``): the sample's sizes rank them
    order = np.argsort(np.argsort(np.bincount(group, weights=count), kind="stable"), kind="stable")
    home, rows, cells = _spills(emb, centres, gram, group, order, reach * radius, max_cells)
    cell = group[home]
    by_cell = np.argsort(cell, kind="stable")
    cell_at = np.searchsorted(cell[by_cell], np.arange(int(group.max()) + 2))
    a, b = _cell_pairs(emb, by_cell, cell_at, rows, cells, min_similarity - _SLACK)
    return _verified(emb, _unique_pairs(a, b, n), min_similarity)


def similar_pairs(emb: np.ndarray, min_similarity: float, exact_limit: int = EXACT_LIMIT, *,
                  cells: int | None = None, reach: float = REACH, max_cells: int = MAX_CELLS,
                  merge: float = MERGE) -> np.ndarray:
    """Pairs (i, j), i < j, of unit rows with cosine >= ``min_similarity``, as (n, 2) int64,
    sorted. Up to ``exact_limit`` rows every pair is compared. Above, the rows are split into
    cells around ``cells`` k-means centres (default 2 sqrt(n); a crowd's centres and those
    within ``merge`` * r of them share one) and compared within a cell, a row near a border
    also in up to ``max_cells`` - 1 smaller cells (``reach``: REACH's comment). Every pair reported is at or
    above the bound (each is recomputed); a pair whose two rows the rule keeps in different
    cells is missed (bench/dedup_scale.py measures the recall against every pair). ``emb`` may
    be float16: it is converted a block at a time, never whole."""
    n = len(emb)
    if n < 2:
        return np.empty((0, 2), np.int64)
    if n > exact_limit:
        k = cells if cells is not None else int(min(MAX_CENTRES, max(16, 2 * math.sqrt(n))))
        return _pairs_by_cells(emb, min_similarity, min(k, n), reach, max_cells, merge)
    x = _f32(emb)
    a, b = _block_pairs(x, x, min_similarity - _SLACK, upper=True)
    return _verified(emb, np.stack([a, b], 1).astype(np.int64), min_similarity)


def groups_of(n: int, pairs: np.ndarray) -> list[list[int]]:
    """Connected components (union-find) of the pairs, each of 2+ members, members in order."""
    root = _union(n, pairs.tolist())
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
