"""The pHash near-duplicate index gives the all-pairs verdicts (docs/quality.md, issue 17)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from wandata.dataset.records import ClipRecord
from wandata.quality import duplicates
from wandata.quality.duplicates import find_duplicates, find_duplicates_all_pairs, near_hash_pairs


def _flip(rng, h: int, bits: int) -> int:
    for b in rng.choice(64, bits, replace=False):
        h ^= 1 << int(b)
    return h


def planted_clips(n: int, seed: int, groups: int = 0, frames: int = 5) -> list[ClipRecord]:
    """Random clips over two buckets and a few shots, plus ``groups`` planted near-copies
    (each frame of a copy 0-8 bits away from the original's, so some fall inside the bound
    and some outside)."""
    rng = np.random.default_rng(seed)
    clips = []
    for i in range(n):
        hs = [int(x) for x in rng.integers(0, 2**64, frames, dtype=np.uint64)]
        clips.append(ClipRecord(clip_id=f"c{i}", source_id=f"s{i % 7}", source_path=f"s{i % 7}.mp4",
                                shot_index=int(rng.integers(0, 3)), window_index=i, shot_start_s=0,
                                shot_end_s=1, bucket=("a", "b")[i % 2], phash=[f"{h:016x}" for h in hs]))
    for g in range(groups):
        orig = clips[int(rng.integers(0, n))]
        for _ in range(int(rng.integers(1, 4))):
            hs = [_flip(rng, int(h, 16), int(rng.integers(0, 9))) for h in orig.phash]
            rng.shuffle(hs)
            clips.append(ClipRecord(clip_id=f"g{g}-{len(clips)}", source_id=f"t{len(clips) % 5}",
                                    source_path="t.mp4", shot_index=int(rng.integers(0, 3)),
                                    window_index=len(clips), shot_start_s=0, shot_end_s=1,
                                    bucket=orig.bucket, phash=[f"{h:016x}" for h in hs[:int(rng.integers(1, frames + 1))]]))
    order = rng.permutation(len(clips))
    return [clips[i] for i in order]


def _ids(found):
    return [(c.clip_id, t.clip_id, d) for c, t, d in found]


@pytest.mark.parametrize("seed,bound", [(0, 0), (1, 3), (2, 6), (3, 10)])
def test_index_equals_all_pairs_on_planted_duplicates(seed, bound):
    clips = planted_clips(120, seed, groups=30)
    reference = _ids(find_duplicates_all_pairs(clips, bound))
    assert _ids(find_duplicates(clips, bound)) == reference
    if bound >= 6:
        assert len(reference) >= 10   # the planted copies are found, not an empty agreement


def test_index_equals_all_pairs_on_random_hashes_and_identical_frames():
    clips = planted_clips(120, 7)
    clips[5].phash = list(clips[3].phash)          # byte-identical copies, other shot
    clips[5].source_id = "other"
    clips[9].phash = [clips[3].phash[0]] * 5       # one frame repeated
    clips[9].source_id = "third"
    clips[11].status = "dropped"
    for bound in (0, 6, 16):
        assert _ids(find_duplicates(clips, bound)) == _ids(find_duplicates_all_pairs(clips, bound))


@pytest.mark.parametrize("bound", [0, 2, 6, 12])
def test_near_hash_pairs_is_exact(bound):
    rng = np.random.default_rng(bound)
    base = rng.integers(0, 2**64, 120, dtype=np.uint64)
    near = np.array([_flip(rng, int(h), int(rng.integers(0, 14))) for h in base[:80]], np.uint64)
    hashes = np.concatenate([base, near, base[:10]])
    expected = {(i, j) for i, j in itertools.combinations(range(len(hashes)), 2)
                if bin(int(hashes[i]) ^ int(hashes[j])).count("1") <= bound}
    got = {tuple(p) for p in near_hash_pairs(hashes, bound).tolist()}
    assert got == expected and len(expected) > 10


def test_the_index_is_used_at_scale():
    """A large set is searched by chunk keys, not by all pairs (the plan is what near_hash_pairs
    follows)."""
    assert duplicates._plan(10, 6) is None
    m, s = duplicates._plan(1_000_000, 6)
    assert m - s == 6
