"""Quality: per-window scores (``scores``), the filters that read them (``filters``) and the
near-duplicate filter across clips (``duplicates``); docs/quality.md. The names callers use
are here, so that ``quality.drop_duplicates`` is the one a test can replace."""
from __future__ import annotations

from wandata.quality.duplicates import drop_duplicates, find_duplicates, hash_distance, mark_duplicate
from wandata.quality.filters import TABLE, Filter, failures, verdict
from wandata.quality.scores import SAMPLES, Scores, copy_scores, score

__all__ = ["SAMPLES", "TABLE", "Filter", "Scores", "copy_scores", "drop_duplicates", "failures",
           "find_duplicates", "hash_distance", "mark_duplicate", "score", "verdict"]
