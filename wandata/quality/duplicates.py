"""The duplicate filter: near-identical clips across the whole dataset (docs/quality.md).

Two clips match when their perceptual hashes (``scores.phash``) are close. Unlike the other
filters it compares clips with each other, so it runs once every source is done: at the end of
an ingest (``drop_duplicates``) and over the whole preview in ``wandata plan``.
"""
from __future__ import annotations

import numpy as np

from wandata.dataset.reasons import Reason


def hash_distance(a: list[str], b: list[str]) -> int:
    """Median over a's frames of the Hamming distance to b's closest frame: two windows of the
    same material a few frames out of phase still match."""
    if not a or not b:
        return 64
    d = [min(bin(int(x, 16) ^ int(z, 16)).count("1") for z in b) for x in a]
    return int(np.median(d))


def find_duplicates(clips, max_distance: int) -> list[tuple[object, object, int]]:
    """``(clip, kept twin, distance)`` for every kept clip that repeats an earlier kept one.

    Clips are taken in the order given (the manifest's: source path, shot, window) and the
    first of a group is kept, so reruns and added sources never change which copy survives.
    Only clips of the same bucket are compared: a portrait and a landscape crop of the same
    material are different training examples. Windows of one shot are never compared: a slow
    take looks alike from window to window, and those windows were chosen on purpose."""
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
