"""``wandata plan``: what ``ingest`` would produce from some sources, without writing a clip.

Each source goes through the same ``pipeline.process_source`` as a real ingest, with
``dry_run``: decoded, shot-detected, planned and scored (so quality drops are the real
ones), but never encoded. Sources with the same content and near-duplicate clips are then
dropped as the engine would, so the plan matches, clip for clip, what an ingest of the same
sources into an empty dataset writes.
"""
from __future__ import annotations

from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from wandata import quality
from wandata.dataset import reasons
from wandata.settings import Settings
from wandata.ingest.discover import discover
from wandata.engine import LocalEngine
from wandata.ingest.run import failed_record, gpu_wanted, process_source
from wandata.ingest.windows import window_starts
from wandata.dataset.records import DROPPED, KEPT, ClipRecord, SourceRecord

FRAME_COUNTS = (81, 65, 49, 33, 17)  # Wan's usual 4k+1 lengths, longest first


@dataclass
class Plan:
    settings: Settings
    sources: list[SourceRecord] = field(default_factory=list)
    clips: list[ClipRecord] = field(default_factory=list)

    def kept(self) -> list[ClipRecord]:
        return [c for c in self.clips if c.status == KEPT]

    def totals(self) -> dict:
        kept = self.kept()
        return {
            "sources": dict(Counter(s.status for s in self.sources)),
            "clips": dict(Counter(c.status for c in self.clips)),
            "by_bucket": dict(Counter(c.bucket for c in kept)),
            "by_orientation": dict(Counter(c.orientation for c in kept)),
            "by_frames": dict(Counter(str(c.num_frames) for c in kept)),
            "seconds": round(sum(c.end_s - c.start_s for c in kept), 2),
            "dropped_by": dict(Counter(_why(c) for c in self.clips if c.status == DROPPED)),
        }

    def material(self) -> list[dict]:
        """Per frame count, how many windows and seconds the detected shots hold (before the
        quality filters, which depend on the windows): real shots are often shorter than the
        5.06 s that 81 frames need, and a shorter clip length may keep much more."""
        fps, s = self.settings.fps, self.settings
        # Every source with shots, also those whose clips were all filtered out; not a copy.
        lengths = [round((b - a) * fps) for src in self.sources
                   if src.reason_code != "duplicate_content" for a, b in src.shots]
        total = sum(lengths) / fps
        out = []
        for n in FRAME_COUNTS:
            windows = sum(len(window_starts(0, m - 1, n, s.mode, s.windows_per_shot)) for m in lengths)
            shots = sum(1 for m in lengths if m >= n)
            secs = windows * n / fps
            out.append({"frames": n, "seconds_per_clip": round(n / fps, 2), "shots_usable": shots,
                        "windows": windows, "seconds": round(secs, 2),
                        "share_of_shots": round(secs / total, 3) if total else 0.0})
        return out

    def to_dict(self) -> dict:
        return {"settings": self.settings.to_dict(), "totals": self.totals(),
                "material": self.material(),
                "sources": [{**_source(s), "clips": [_clip(c) for c in self.clips
                                                       if c.source_path == s.path]}
                            for s in self.sources]}


def _why(c: ClipRecord) -> str:
    """The reason's kind: the quality filter's name, or the reason code."""
    return reasons.filter_of(c.reason_code) or c.reason_code


def _source(s: SourceRecord) -> dict:
    keys = ("path", "status", "reason_code", "reason", "display_width", "display_height", "duration_s", "fps",
            "crop", "shots")
    return {k: getattr(s, k) for k in keys}


def _clip(c: ClipRecord) -> dict:
    keys = ("clip_id", "path", "status", "reason_code", "reason", "shot_index", "window_index", "start_s", "end_s",
            "num_frames", "bucket", "orientation", "motion", "sharpness", "brightness", "contrast",
            "text", "flags")
    return {k: getattr(c, k) for k in keys}


def make_plan(sources, dataset: Path, settings: Settings, on_source=None, engine=None) -> Plan:
    """``engine``: where the sources are planned, as for ingest (default: the local engine with
    ``settings.workers``); ``on_source(path)`` is called as each source's plan comes back."""
    dataset = Path(dataset).resolve()
    files = sorted(str(p.resolve()) for p in discover(sources, exclude=[dataset]))
    plan = Plan(settings)
    job = partial(process_source, settings=settings, dataset=dataset, dry_run=True)
    failed = partial(failed_record, settings=settings)  # as in ingest: recorded, the plan goes on
    done = {}
    engine = engine or LocalEngine(settings.workers)
    with closing(engine.results(job, failed, files, gpu=gpu_wanted(settings))) as results:
        for src, clips in results:
            if on_source:
                on_source(src.path)
            done[src.path] = (src, clips)
    seen: dict[str, str] = {}
    for f in files:  # in path order whatever order they finished in: the same copy is kept
        src, clips = done[f]
        if src.status == KEPT and src.content_hash in seen:
            src.status, src.reason = DROPPED, f"same content as {seen[src.content_hash]}; kept that copy only"
            clips = []
        elif src.content_hash:
            seen.setdefault(src.content_hash, src.path)
        plan.sources.append(src)
        plan.clips.extend(clips)
    if "duplicate" in settings.filters:
        for c, twin, d in quality.find_duplicates(plan.clips, settings.max_duplicate_distance):
            quality.mark_duplicate(c, twin, d, settings)
    return plan
