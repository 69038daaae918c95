"""What ``ingest(dry_run=True)`` returns (``wandata plan``, ``ingest --dry-run``): the rows an
ingest of the same sources into an empty dataset would write, with their totals and how much
of the shots each clip length would keep. ``ingest.run`` fills it; nothing here decides.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from wandata.dataset import totals as totals_mod
from wandata.dataset.records import ClipRecord, SourceRecord
from wandata.ingest.windows import window_starts
from wandata.settings import Settings

FRAME_COUNTS = (81, 65, 49, 33, 17)  # Wan's usual 4k+1 lengths, longest first


@dataclass
class Preview:
    settings: Settings
    sources: list[SourceRecord] = field(default_factory=list)
    clips: list[ClipRecord] = field(default_factory=list)

    def totals(self) -> dict:
        t = totals_mod.count(self.sources, self.clips)
        return {"sources": t.sources, "clips": t.clips, "by_bucket": t.buckets,
                "by_orientation": t.orientations, "by_frames": t.frames, "seconds": t.seconds,
                "dropped_by": t.dropped_by}

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


def _source(s: SourceRecord) -> dict:
    keys = ("path", "status", "reason_code", "reason", "display_width", "display_height", "duration_s", "fps",
            "crop", "shots")
    return {k: getattr(s, k) for k in keys}


def _clip(c: ClipRecord) -> dict:
    keys = ("clip_id", "path", "status", "reason_code", "reason", "shot_index", "window_index", "start_s", "end_s",
            "num_frames", "bucket", "orientation", "motion", "sharpness", "brightness", "contrast",
            "text", "flags")
    return {k: getattr(c, k) for k in keys}

