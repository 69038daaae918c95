"""Semantic dedup's pair search at scale (issue 17): the k-means cell path finds the pairs that
comparing every pair finds, and groups and keeps as the exact path does. The sets are small
(a few thousand rows), with the exact limit lowered so that the cell path runs."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("faiss")

from wandata.dataset.records import ClipRecord  # noqa: E402
from wandata.quality import duplicates  # noqa: E402
from wandata.quality.duplicates import find_semantic_duplicates, similar_pairs  # noqa: E402

BOUND = 0.95


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def clustered(n: int, dim: int, seed: int) -> np.ndarray:
    """Rows around a few dozen centres (some tight, whose rows pass the bound among
    themselves), plus planted groups of 1-4 copies at cosine 0.95-0.99 to an original; float16
    as the benchmark holds them."""
    rng = np.random.default_rng(seed)
    k = 40
    centres = _unit(0.75 * _unit(rng.standard_normal(dim)) + 0.66 * _unit(rng.standard_normal((k, dim))))
    spread = np.where(rng.random(k) < 0.15, rng.uniform(0.18, 0.27, k), rng.uniform(0.3, 0.9, k))
    label = rng.choice(k, n, p=_unit(rng.lognormal(0, 1, k)) ** 2)
    x = _unit(centres[label] + spread[label, None] * rng.standard_normal((n, dim)) / np.sqrt(dim))
    originals = np.repeat(rng.choice(n // 10, n // 50, replace=False), rng.integers(1, 5, n // 50))
    copies = rng.choice(np.arange(n // 10, n), len(originals), replace=False)
    u = rng.standard_normal((len(copies), dim))
    u = _unit(u - np.einsum("ij,ij->i", u, x[originals])[:, None] * x[originals])
    c = rng.uniform(0.95, 0.99, len(copies))[:, None]
    x[copies] = _unit(c * x[originals] + np.sqrt(1 - c * c) * u)
    return x.astype(np.float16)


def brute_force(emb: np.ndarray, bound: float) -> tuple[set, set]:
    """Every pair's cosine in float64: the pairs above the bound, and the few within 1e-6 of it,
    which float32 rounding may put on either side (the search may return them or not)."""
    x = emb.astype(np.float64)
    sims = x @ x.T
    i, j = np.triu_indices(len(x), 1)
    s = sims[i, j]
    above, near = s >= bound + 1e-6, np.abs(s - bound) < 1e-6
    return set(zip(i[above].tolist(), j[above].tolist())), set(zip(i[near].tolist(), j[near].tolist()))


def same_pairs(got: np.ndarray, want: tuple[set, set]) -> bool:
    found = {tuple(p) for p in got.tolist()}
    return want[0] <= found and not found - want[0] - want[1]


def test_cells_find_exactly_the_pairs_every_pair_finds(monkeypatch):
    emb = clustered(5000, 128, seed=3)
    want = brute_force(emb, BOUND)
    assert len(want[0]) > 500 and len(want[1]) < 5
    seen = {}
    cells = duplicates._cells

    def spy(*args, **kwargs):
        seen["centres"] = cells(*args, **kwargs)
        return seen["centres"]

    monkeypatch.setattr(duplicates, "_cells", spy)
    got = similar_pairs(emb, BOUND, exact_limit=100)
    assert seen, "the cell path did not run"
    assert same_pairs(got, want)
    assert got.dtype == np.int64 and np.all(got[:, 0] < got[:, 1])
    assert got.tolist() == sorted(got.tolist())
    # the set tests the border rules: some pairs have their two rows in different home cells
    home = (emb.astype(np.float32) @ seen["centres"].T).argmax(1)
    assert sum(home[a] != home[b] for a, b in want[0]) > 5
    # and the exact path agrees, pair for pair
    assert similar_pairs(emb, BOUND).tolist() == got.tolist()


def test_the_cell_path_groups_and_keeps_as_the_exact_path():
    emb = clustered(4000, 64, seed=5)
    rng = np.random.default_rng(0)
    clips = [ClipRecord(clip_id=f"c{i}", source_id=f"s{i % 400}", source_path="", shot_index=int(rng.integers(0, 2)),
                        window_index=i, shot_start_s=0, shot_end_s=float(rng.uniform(1, 9)),
                        bucket=("a", "b")[int(rng.integers(0, 2))], sharpness=float(rng.integers(0, 50)))
             for i in range(len(emb))]
    exact = find_semantic_duplicates(clips, emb, BOUND, "longest")
    cells = find_semantic_duplicates(clips, emb, BOUND, "longest", exact_limit=100)
    assert len(exact) > 100
    assert [(c.clip_id, k.clip_id, s, n, why) for c, k, s, n, why in cells] == \
        [(c.clip_id, k.clip_id, s, n, why) for c, k, s, n, why in exact]


def test_full_reach_finds_every_pair_even_without_clusters():
    # Random rows have no clusters: every row is near many cell borders. With reach 1 and no
    # cap the spill rule is the proof's (duplicates._spills), so nothing may be missed.
    rng = np.random.default_rng(7)
    emb = _unit(rng.standard_normal((3000, 32)))
    copies = rng.choice(3000, 300, replace=False)
    emb[copies] = _unit(emb[rng.integers(0, 3000, 300)] + 0.3 * rng.standard_normal((300, 32)) / np.sqrt(32))
    emb = emb.astype(np.float32)
    want = brute_force(emb, 0.8)
    assert len(want[0]) > 200
    got = similar_pairs(emb, 0.8, exact_limit=100, reach=1.0, max_cells=10**6)
    assert same_pairs(got, want)
