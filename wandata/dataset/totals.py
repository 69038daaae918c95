"""The totals of a set of source and clip rows, counted one way for every reader.

The ingest summary, ``wandata plan`` (and ``ingest --dry-run``) and the HTML report all show
how many sources and clips were kept, dropped or failed, and why. They count here so that
the three never disagree. This module sits in ``dataset`` (below ingest and report) so that
both can use it; it reads records only and decides nothing.

Counters keep the order in which a key is first met (rows come in manifest or plan order),
which is the order the plan prints them in.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

from wandata.dataset import reasons
from wandata.dataset.records import DROPPED, FAILED, KEPT, ClipRecord, SourceRecord


@dataclass
class Totals:
    sources: dict[str, int] = field(default_factory=dict)       # by status
    clips: dict[str, int] = field(default_factory=dict)         # by status
    buckets: dict[str, int] = field(default_factory=dict)       # kept clips by bucket
    orientations: dict[str, int] = field(default_factory=dict)  # kept clips by orientation
    frames: dict[str, int] = field(default_factory=dict)        # kept clips by frame count ("81")
    seconds: float = 0.0                                        # of kept clips, 2 decimals
    dropped_by: dict[str, int] = field(default_factory=dict)    # dropped clips by filter name or code
    source_codes: dict[str, int] = field(default_factory=dict)  # sources not kept, by reason code
    clip_codes: dict[str, int] = field(default_factory=dict)    # clips not kept, by reason code
    # Sources not kept or kept with a warning, then failed clips: what someone must look at.
    problems: list[dict] = field(default_factory=list)


def dropped_by(c: ClipRecord) -> str:
    """The kind of a drop: the quality filter's name (``blur``...) or else the reason code."""
    return reasons.filter_of(c.reason_code) or c.reason_code


def count(sources: Iterable[SourceRecord], clips: Iterable[ClipRecord]) -> Totals:
    sources, clips = list(sources), list(clips)
    kept = [c for c in clips if c.status == KEPT]
    problems = [{"file": s.path, "status": s.status, "code": s.reason_code, "reason": s.reason}
                for s in sources if s.status != KEPT or s.reason]
    problems += [{"file": c.path or c.source_path, "status": c.status, "code": c.reason_code,
                  "reason": c.reason} for c in clips if c.status == FAILED]
    return Totals(
        sources=dict(Counter(s.status for s in sources)),
        clips=dict(Counter(c.status for c in clips)),
        buckets=dict(Counter(c.bucket for c in kept)),
        orientations=dict(Counter(c.orientation for c in kept)),
        frames=dict(Counter(str(c.num_frames) for c in kept)),
        seconds=round(sum(c.end_s - c.start_s for c in kept), 2),
        dropped_by=dict(Counter(dropped_by(c) for c in clips if c.status == DROPPED)),
        source_codes=dict(Counter(s.reason_code for s in sources if s.status != KEPT)),
        clip_codes=dict(Counter(c.reason_code for c in clips if c.status != KEPT)),
        problems=problems,
    )
