"""The ingest chain for one source, and the run over many (discovery, resume, the manifest).

``process_source`` follows one file from path to clip rows:
probe -> bucket -> one streaming pass (scan -> shots -> plan -> transcode + verify).
It is a plain function of (path, settings, dataset dir) so that any engine
(``wandata.engine``: local processes or Ray tasks) can run it. ``ingest`` finds the
sources, skips finished ones, hands the rest to the engine and is the only writer
of the manifest, once per finished source.
"""
from __future__ import annotations

import json
import os
import re
import time
import unicodedata
from contextlib import closing
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

from wandata.media import borders
from wandata.media import bucket as bucket_mod
from wandata import confine, quality
from wandata.dataset import reasons
from wandata.settings import Settings
from wandata.ingest.discover import discover
from wandata.engine import LocalEngine
from wandata.dataset.manifest import Manifest
from wandata.ingest.windows import Window
from wandata.media.probe import probe
from wandata.dataset.records import DROPPED, FAILED, KEPT, ClipRecord, SourceRecord
from wandata.ingest.stream import ClipMaker
from wandata.media.encode import cleanup_partials

CLIPS_DIR = "clips"


def slug(text: str, limit: int = 48) -> str:
    ascii_ = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    s = re.sub(r"[^A-Za-z0-9]+", "-", ascii_).strip("-")[:limit]
    return s or "video"


def clip_dir(dataset: Path, src: SourceRecord) -> Path:
    return dataset / CLIPS_DIR / f"{slug(Path(src.path).stem)}-{src.source_id[:8]}"


def process_source(path: str, settings: Settings, dataset: Path,
                   on_progress: Callable[[float], None] | None = None,
                   dry_run: bool = False) -> tuple[SourceRecord, list[ClipRecord]]:
    """``on_progress(fraction)`` is called now and then with how much of the source is done.
    ``dry_run``: decode, detect, plan and score as usual but encode and delete nothing; kept
    windows come back as the clips that would be written (``wandata plan``)."""
    timings: dict[str, float] = {}
    t = time.perf_counter()
    src = probe(Path(path), settings.min_source_duration_s)
    src.settings_fingerprint = settings.fingerprint()
    src.settings_json = json.dumps(settings.to_dict(), sort_keys=True)
    src.detector = settings.detector
    timings["probe_s"] = time.perf_counter() - t
    if src.status != KEPT:
        return _done(src, [], timings)

    t = time.perf_counter()
    box = (borders.detect(path, src.rotation, src.duration_s, settings.border_luma)
           if settings.crop_borders else None)
    src.crop = list(box) if box else []
    timings["borders_s"] = time.perf_counter() - t
    fit = bucket_mod.fit(src.display_width, src.display_height, settings.buckets, box)
    if fit.scale > 1 / settings.min_source_scale:
        cw, ch = (box[2], box[3]) if box else (src.display_width, src.display_height)
        inside = " inside its black bars" if box else ""
        src.set(DROPPED, "too_small", f"source is {cw}x{ch}{inside}; filling the "
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

    made = ClipMaker(path, settings, fit, src.rotation, clip_path, tick, encode=not dry_run).run()
    timings["stream_s"] = time.perf_counter() - t
    tl = made.timeline
    if not tl.times:
        src.set(FAILED, "decode_error", "no frame could be decoded; the file is corrupt")
        return _done(src, [], timings)
    if tl.decode_error and not src.reason:
        src.reason_code = "decode_error"  # a warning on the source while it yields clips
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
        scores, code, drop, c.flags = made.scores[w]
        quality.copy_scores(scores, c)
        if drop:
            c.set(DROPPED, code, drop)
            c.path = ""
        elif dry_run:
            pass  # would be written
        elif w in made.errors:
            c.set(FAILED, *made.errors[w])
        else:
            decoded, problem = made.verified[w]
            c.verified_frames, c.verified_fps = decoded.frames, decoded.fps
            c.verified_size = f"{decoded.width}x{decoded.height}"
            c.decoded_digest = decoded.digest
            if problem:
                c.set(FAILED, "verify_failed", f"verification failed: {problem}")
                clip_path(w).unlink(missing_ok=True)
        clips.append(c)
    for d in made.dropped:
        c = _clip_record(src, settings, fit, d.shot_index, -1, d.shot, origin)
        c.set(DROPPED, d.code, d.reason)
        clips.append(c)
    clips.sort(key=lambda c: (c.shot_index, c.window_index))
    # Files of an earlier run of this source that this plan did not produce are stale.
    planned = {Path(c.path).name for c in clips if c.path}
    for old in (out_dir.iterdir() if out_dir.is_dir() and not dry_run else []):
        if old.name not in planned:
            old.unlink()

    if not any(c.status == KEPT for c in clips):
        _no_clips_verdict(src, clips)
    return _done(src, clips, timings)


def _no_clips_verdict(src: SourceRecord, clips: list[ClipRecord]) -> None:
    """Why a source gave no clip. Clips that could not be written are the cause when there are
    any (the material was fine: a rerun retries it); a damaged file that yields nothing failed;
    a healthy one whose shots were all too short or filtered out was curated out."""
    failed = [c for c in clips if c.status == FAILED]
    if failed:
        codes = [c.reason_code for c in failed]
        code = "disk_full" if "disk_full" in codes else codes[0]
        first = next(c for c in failed if c.reason_code == code)
        planned = sum(c.window_index >= 0 for c in clips)
        note = f" (also: {src.reason})" if src.reason else ""
        src.set(FAILED, code, f"{len(failed)} of {planned} planned clips could not be written; "
                f"the first: {first.reason}{note}")
    elif src.reason_code:
        src.status = FAILED  # truncated / decode_error: the damage is why nothing is left
    elif any(c.status == DROPPED and c.window_index >= 0 for c in clips):
        src.set(DROPPED, "all_filtered",
                "every clip was dropped by the quality filters; see the clip rows' reasons")
    else:
        src.set(DROPPED, "no_long_shot",
                "no shot is long enough for one clip; see the dropped clip rows for each shot's length")


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


# ---------------------------------------------------------------- the run over many sources


@dataclass
class Summary:
    sources: dict[str, int] = field(default_factory=lambda: {KEPT: 0, DROPPED: 0, FAILED: 0})
    clips: dict[str, int] = field(default_factory=lambda: {KEPT: 0, DROPPED: 0, FAILED: 0})
    buckets: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    processed: int = 0
    retried: int = 0     # of the processed: sources that had failed (or had a failed clip) before
    seconds: float = 0.0
    dataset: str = ""
    problems: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def summarize(manifest: Manifest, summary: Summary) -> Summary:
    for src in manifest.sources.values():
        summary.sources[src.status] = summary.sources.get(src.status, 0) + 1
        if src.status != KEPT or src.reason:
            summary.problems.append({"file": src.path, "status": src.status, "code": src.reason_code,
                                     "reason": src.reason})
    for c in manifest.all_clips():
        summary.clips[c.status] = summary.clips.get(c.status, 0) + 1
        if c.status == KEPT:
            summary.buckets[c.bucket] = summary.buckets.get(c.bucket, 0) + 1
        elif c.status == FAILED:
            summary.problems.append({"file": c.path or c.source_path, "status": c.status,
                                     "code": c.reason_code, "reason": c.reason})
    return summary


def ingest(sources: list[str | Path], dataset: Path, settings: Settings, progress: bool = True,
           engine=None) -> Summary:
    """``engine``: a ``wandata.engine`` engine; default the local one with ``settings.workers``."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    dataset = Path(dataset)
    dataset.mkdir(parents=True, exist_ok=True)
    cleanup_partials(dataset / CLIPS_DIR)
    manifest = Manifest(dataset)
    manifest.remove_stale_temporaries()
    files = [str(p.resolve()) for p in discover(sources, exclude=[dataset])]
    fp = settings.fingerprint()
    todo = [f for f in files if not manifest.done(f, fp)]
    # Failed with these very settings: tried again once per run (a file that fails every time
    # costs one attempt per run, never a loop).
    retried = sum(1 for f in todo if manifest.failed(f) and manifest.sources[f].settings_fingerprint == fp)
    summary = Summary(dataset=str(dataset), skipped=len(files) - len(todo), retried=retried)
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
            src.set(DROPPED, "duplicate_content", f"same content as {dup}; kept that copy only")
            clips = []
        elif src.content_hash:
            seen_hashes.setdefault(src.content_hash, src.path)
        _remove_replaced(dataset, manifest.clips.get(src.path, []), clips)
        manifest.put(src, clips)
        manifest.save()
        summary.processed += 1
        kept = sum(c.status == KEPT for c in clips)
        finished[0] += sizes[src.path]
        bar.n = finished[0]
        bar.set_postfix_str(f"{summary.processed}/{len(todo)} files, last: {kept} clips")

    def within(path: str):
        bar.set_description(f"ingest {Path(path).name[:24]}")

        def show(fraction: float) -> None:
            bar.n = finished[0] + fraction * sizes[path]
            bar.refresh()
        return show

    engine = engine or LocalEngine(settings.workers)
    # Workers may run elsewhere (a Ray node): give them the absolute dataset path.
    job = partial(process_source, settings=settings, dataset=dataset.resolve())
    failed = partial(failed_record, settings=settings)
    try:
        # closing(): on Ctrl-C or an error the engine cancels the work nobody will record.
        with closing(engine.results(job, failed, todo, gpu=gpu_wanted(settings), progress_for=within)) as results:
            for src, clips in results:
                record(src, clips)
        bar.n = bar.total
    finally:
        bar.close()
        cleanup_partials(dataset / CLIPS_DIR)
    # Also when nothing was processed: a run killed after its last source but before this
    # step must still end as an uninterrupted one would. Finding none is cheap.
    if "duplicate" in settings.filters:
        quality.drop_duplicates(manifest, dataset, settings)
    summary.seconds = round(time.perf_counter() - t0, 2)
    return summarize(manifest, summary)


def _remove_replaced(dataset: Path, old: list[ClipRecord], new: list[ClipRecord]) -> None:
    """Clip files of a source's previous rows that its new rows do not list (a retry that failed
    differently, new settings): the manifest must list every file in clips/."""
    keep = {c.path for c in new if c.path}
    for c in old:
        if c.path and c.path not in keep:
            try:
                confine.inside(dataset, c.path, "clip path in manifest.parquet").unlink(missing_ok=True)
            except confine.OutsideRoot:
                pass  # never delete outside the dataset; the row is replaced all the same


def failed_record(path: str, error: BaseException, settings: Settings) -> tuple[SourceRecord, list[ClipRecord]]:
    """The verdict on a source whose processing raised: recorded against the file, the run goes on
    (and the next run tries it again: a failure is not a decision)."""
    detail = (str(error).strip().splitlines() or [""])[0]  # a reason for people, not a traceback
    code = reasons.for_exception(error)
    what = ("the disk is full" if code == "disk_full"
            else "unexpected error while processing")
    todo = ("free space on the dataset's disk, then run the same command again" if code == "disk_full"
            else "please report it with this file")
    src = SourceRecord(path=path, settings_fingerprint=settings.fingerprint())
    src.set(FAILED, code, f"{what} ({type(error).__name__}: {detail}); {todo}")
    return src, []


def gpu_wanted(settings: Settings) -> bool | None:
    """Whether a source's job needs a GPU: True, False, or None for "one if there is one".
    Only the shot model uses it; the adaptive and none detectors never load it."""
    if settings.detector in ("adaptive", "none"):
        return False
    if settings.device == "auto":
        return None
    return settings.device.startswith("cuda")
