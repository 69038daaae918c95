"""The ingest chain for one source, and the local engine that runs it over many.

``process_source`` follows one file from path to clip rows:
probe -> bucket -> one streaming pass (scan -> shots -> plan -> transcode + verify).
It is a plain function of (path, settings, dataset dir) so that any executor can
run it; only the engine (``ingest``) writes the manifest, once per finished source.
"""
from __future__ import annotations

import json
import os
import re
import time
import unicodedata
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import bucket as bucket_mod
from .config import Settings
from .discover import discover
from .manifest import Manifest
from .plan import Window
from .probe import probe
from .records import DROPPED, FAILED, KEPT, ClipRecord, SourceRecord
from .stream import ClipMaker
from .transcode import cleanup_partials

CLIPS_DIR = "clips"


def slug(text: str, limit: int = 48) -> str:
    ascii_ = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    s = re.sub(r"[^A-Za-z0-9]+", "-", ascii_).strip("-")[:limit]
    return s or "video"


def clip_dir(dataset: Path, src: SourceRecord) -> Path:
    return dataset / CLIPS_DIR / f"{slug(Path(src.path).stem)}-{src.source_id[:8]}"


def process_source(path: str, settings: Settings, dataset: Path,
                   on_progress: Callable[[float], None] | None = None) -> tuple[SourceRecord, list[ClipRecord]]:
    """``on_progress(fraction)`` is called now and then with how much of the source is done."""
    timings: dict[str, float] = {}
    t = time.perf_counter()
    src = probe(Path(path), settings.min_source_duration_s)
    src.settings_fingerprint = settings.fingerprint()
    src.settings_json = json.dumps(settings.to_dict(), sort_keys=True)
    src.detector = settings.detector
    timings["probe_s"] = time.perf_counter() - t
    if src.status != KEPT:
        return _done(src, [], timings)

    fit = bucket_mod.fit(src.display_width, src.display_height, settings.buckets)
    if fit.scale > 1 / settings.min_source_scale:
        src.status = DROPPED
        src.reason = (f"source is {src.display_width}x{src.display_height}; filling the "
                      f"{fit.name} bucket would upscale it {fit.scale:.2f}x (limit "
                      f"{1 / settings.min_source_scale:.2f}x from --min-source-scale "
                      f"{settings.min_source_scale}); lower --min-source-scale to keep it")
        return _done(src, [], timings)

    out_dir = clip_dir(dataset, src)

    def clip_path(w: Window) -> Path:
        return out_dir / f"{out_dir.name}_s{w.shot_index:03d}_w{w.window_index:02d}.mp4"

    t = time.perf_counter()
    expected, done = max(1.0, src.duration_s * settings.fps), [0]

    def tick() -> None:
        done[0] += 1
        if on_progress and done[0] % 16 == 0:
            on_progress(min(1.0, done[0] / expected))

    made = ClipMaker(path, settings, fit, src.rotation, clip_path, tick).run()
    timings["stream_s"] = time.perf_counter() - t
    tl = made.timeline
    if not tl.times:
        src.status, src.reason = FAILED, "no frame could be decoded; the file is corrupt"
        return _done(src, [], timings)
    if tl.decode_error and not src.reason:
        src.reason = ("the video could not be decoded to its end (the file is damaged); "
                      "clips come from the readable part only")
    origin, fps = tl.times[0], settings.fps
    src.shots = [[origin + a / fps, origin + (b + 1) / fps] for a, b in made.shots]

    clips = []
    for w in made.windows:
        c = _clip_record(src, settings, fit, w.shot_index, w.window_index, made.shots[w.shot_index], origin)
        c.start_s, c.end_s = origin + w.start / fps, origin + (w.start + w.n) / fps
        c.src_frames = [tl.grid_src[j] for j in w.frames]
        c.path = clip_path(w).relative_to(dataset).as_posix()
        if w in made.errors:
            c.status, c.reason = FAILED, made.errors[w]
        else:
            decoded, problem = made.verified[w]
            c.verified_frames, c.verified_fps = decoded.frames, decoded.fps
            c.verified_size = f"{decoded.width}x{decoded.height}"
            c.decoded_digest = decoded.digest
            if problem:
                c.status, c.reason = FAILED, f"verification failed: {problem}"
                clip_path(w).unlink(missing_ok=True)
        clips.append(c)
    for d in made.dropped:
        c = _clip_record(src, settings, fit, d.shot_index, -1, d.shot, origin)
        c.status, c.reason = DROPPED, d.reason
        clips.append(c)
    clips.sort(key=lambda c: (c.shot_index, c.window_index))
    # Files of an earlier run of this source that this plan did not produce are stale.
    planned = {Path(c.path).name for c in clips if c.path}
    for old in (out_dir.iterdir() if out_dir.exists() else []):
        if old.name not in planned:
            old.unlink()

    if not any(c.status == KEPT for c in clips):
        # A damaged file that yields nothing failed; a healthy one with only short shots was curated out.
        src.status = FAILED if src.reason else DROPPED
        src.reason = src.reason or ("no shot is long enough for one clip; see the dropped clip rows "
                                    "for each shot's length")
    return _done(src, clips, timings)


def _clip_record(src, settings, fit, shot_index, window_index, shot, origin) -> ClipRecord:
    a, b = shot
    wtag = f"w{window_index:02d}" if window_index >= 0 else "dropped"
    return ClipRecord(
        clip_id=f"{src.source_id[:12]}-s{shot_index:03d}-{wtag}",
        source_id=src.source_id, source_path=src.path, shot_index=shot_index,
        window_index=window_index, shot_start_s=origin + a / settings.fps,
        shot_end_s=origin + (b + 1) / settings.fps,
        num_frames=settings.frames, fps=settings.fps, bucket=fit.name, width=fit.width,
        height=fit.height, orientation=fit.orientation, scale=float(fit.scale),
        upscaled=fit.scale > 1.0, settings_fingerprint=settings.fingerprint())


def _done(src, clips, timings):
    src.timings_json = json.dumps({k: round(v, 3) for k, v in timings.items()})
    return src, clips


# ---------------------------------------------------------------- the local engine


@dataclass
class Summary:
    sources: dict[str, int] = field(default_factory=lambda: {KEPT: 0, DROPPED: 0, FAILED: 0})
    clips: dict[str, int] = field(default_factory=lambda: {KEPT: 0, DROPPED: 0, FAILED: 0})
    buckets: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    processed: int = 0
    seconds: float = 0.0
    dataset: str = ""
    problems: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def summarize(manifest: Manifest, summary: Summary) -> Summary:
    for src in manifest.sources.values():
        summary.sources[src.status] = summary.sources.get(src.status, 0) + 1
        if src.status != KEPT or src.reason:
            summary.problems.append({"file": src.path, "status": src.status, "reason": src.reason})
    for c in manifest.all_clips():
        summary.clips[c.status] = summary.clips.get(c.status, 0) + 1
        if c.status == KEPT:
            summary.buckets[c.bucket] = summary.buckets.get(c.bucket, 0) + 1
        elif c.status == FAILED:
            summary.problems.append({"file": c.path or c.source_path, "status": c.status, "reason": c.reason})
    return summary


def ingest(sources: list[str | Path], dataset: Path, settings: Settings, progress: bool = True) -> Summary:
    from tqdm import tqdm

    t0 = time.perf_counter()
    dataset = Path(dataset)
    dataset.mkdir(parents=True, exist_ok=True)
    cleanup_partials(dataset / CLIPS_DIR)
    manifest = Manifest(dataset)
    files = [str(p.resolve()) for p in discover(sources, exclude=[dataset])]
    fp = settings.fingerprint()
    todo = [f for f in files if not manifest.done(f, fp)]
    summary = Summary(dataset=str(dataset), skipped=len(files) - len(todo))
    seen_hashes = {s.content_hash: s.path for s in manifest.sources.values()
                   if s.content_hash and s.path not in todo and s.status == KEPT}

    # Progress in megabytes of source: smooth within a long file, fair across files.
    sizes = {f: os.path.getsize(f) / 1e6 for f in todo}
    bar = tqdm(total=sum(sizes.values()), unit="MB", desc="ingest", disable=not progress,
               dynamic_ncols=True, bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} MB [{elapsed}<{remaining}{postfix}]")
    finished = [0.0]

    def record(src: SourceRecord, clips: list[ClipRecord]) -> None:
        if src.status == KEPT and src.content_hash in seen_hashes and seen_hashes[src.content_hash] != src.path:
            dup = seen_hashes[src.content_hash]
            for c in clips:
                if c.path:
                    (dataset / c.path).unlink(missing_ok=True)
            src.status, src.reason = DROPPED, f"same content as {dup}; kept that copy only"
            clips = []
        elif src.content_hash:
            seen_hashes.setdefault(src.content_hash, src.path)
        manifest.put(src, clips)
        manifest.save()
        summary.processed += 1
        kept = sum(c.status == KEPT for c in clips)
        finished[0] += sizes[src.path]
        bar.n = finished[0]
        bar.set_postfix_str(f"{summary.processed}/{len(todo)} files, last: {kept} clips")

    def within(path: str):
        def show(fraction: float) -> None:
            bar.n = finished[0] + fraction * sizes[path]
            bar.refresh()
        return show

    try:
        if settings.workers <= 1 or len(todo) <= 1:
            for f in todo:
                bar.set_description(f"ingest {Path(f).name[:24]}")
                record(*_safe_process(f, settings, dataset, within(f)))
        else:
            with ProcessPoolExecutor(settings.workers, mp_context=_spawn()) as pool:
                futures = [pool.submit(_safe_process, f, settings, dataset) for f in todo]
                for fut in as_completed(futures):
                    record(*fut.result())
        bar.n = bar.total
    finally:
        bar.close()
        cleanup_partials(dataset / CLIPS_DIR)
    summary.seconds = round(time.perf_counter() - t0, 2)
    return summarize(manifest, summary)


def _safe_process(path: str, settings: Settings, dataset: Path, on_progress=None):
    """Any unexpected error is recorded against the file; the run goes on."""
    try:
        return process_source(path, settings, dataset, on_progress)
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001 - one bad file must not end the run
        src = SourceRecord(path=path, status=FAILED, settings_fingerprint=settings.fingerprint(),
                           reason=f"unexpected error while processing ({type(e).__name__}: {e}); "
                                  "please report it with this file")
        return src, []


def _spawn():
    import multiprocessing
    return multiprocessing.get_context("spawn")

