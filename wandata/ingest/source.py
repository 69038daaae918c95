"""One source file from path to its rows: probe -> fit -> stream -> rows -> verdict.

``process_source`` is a plain function of (path, settings, dataset dir) so that any engine
(``wandata.engine``: local processes or Ray tasks) can run it; it never touches the manifest.
Each stage is a small function below, in the order they run.
"""
from __future__ import annotations

import json
import re
import time
import unicodedata
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from wandata.atomic import CLIPS_DIR
from wandata.dataset import reasons
from wandata.dataset.records import DROPPED, FAILED, KEPT, ClipRecord, SourceRecord
from wandata.ingest.clips import clip_rows
from wandata.ingest.stream import ClipMaker, Result
from wandata.ingest.windows import Window
from wandata.media import borders, threads
from wandata.media import bucket as bucket_mod
from wandata.media.probe import probe
from wandata.settings import Settings


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
    threads.set_budget(settings.threads)   # here: the process that runs this source (pool or Ray worker)
    timings: dict[str, float] = {}
    with _timed(timings, "probe_s"):
        src = _probe(path, settings)
    if src.status != KEPT:
        return _done(src, [], timings)
    with _timed(timings, "borders_s"):
        box = _borders(path, src, settings)
    fit = _fit(src, settings, box)
    if fit is None:
        return _done(src, [], timings)

    out_dir = clip_dir(dataset, src)

    def clip_path(w: Window) -> Path:
        return out_dir / f"{out_dir.name}_s{w.shot_index:03d}_w{w.window_index:02d}.mp4"

    with _timed(timings, "stream_s"):
        made = _stream(path, settings, src, fit, clip_path, on_progress, dry_run)
    if not _take_timeline(src, made, settings):
        return _done(src, [], timings)
    clips = clip_rows(src, settings, fit, made, dataset, clip_path, dry_run)
    if not dry_run:
        _remove_stale(out_dir, clips)
    if not any(c.status == KEPT for c in clips):
        _no_clips_verdict(src, clips)
    return _done(src, clips, timings)


@contextmanager
def _timed(timings: dict[str, float], key: str):
    t = time.perf_counter()
    yield
    timings[key] = time.perf_counter() - t


def _probe(path: str, settings: Settings) -> SourceRecord:
    """The file's facts, stamped with the settings it is processed with."""
    src = probe(path, settings.min_source_duration_s)  # a str: it may be a URL (wandata.storage)
    src.settings_fingerprint = settings.fingerprint()
    src.settings_json = json.dumps(settings.to_dict(), sort_keys=True)
    src.detector = settings.detector
    return src


def _borders(path: str, src: SourceRecord, settings: Settings):
    """The picture inside black bars (x, y, w, h), or None; recorded on the source."""
    box = (borders.detect(path, src.rotation, src.duration_s, settings.border_luma)
           if settings.crop_borders else None)
    src.crop = list(box) if box else []
    return box


def _fit(src: SourceRecord, settings: Settings, box) -> bucket_mod.Fit | None:
    """The bucket the picture fills, or None (the source dropped) when that would upscale it
    more than the settings allow."""
    fit = bucket_mod.fit(src.display_width, src.display_height, settings.buckets, box)
    if fit.scale <= 1 / settings.min_source_scale:
        return fit
    cw, ch = (box[2], box[3]) if box else (src.display_width, src.display_height)
    inside = " inside its black bars" if box else ""
    src.set(DROPPED, "too_small", f"source is {cw}x{ch}{inside}; filling the "
            f"{fit.name} bucket would upscale it {fit.scale:.2f}x (limit "
            f"{1 / settings.min_source_scale:.2f}x from --min-source-scale "
            f"{settings.min_source_scale}); lower --min-source-scale to keep it")
    return None


def _stream(path: str, settings: Settings, src: SourceRecord, fit, clip_path, on_progress,
            dry_run: bool) -> Result:
    """The one pass over the file, reporting progress every 16 grid frames."""
    expected, done = max(1.0, src.duration_s * settings.fps), [0]

    def tick() -> None:
        done[0] += 1
        if on_progress and done[0] % 16 == 0:
            on_progress(min(1.0, done[0] / expected))

    return ClipMaker(path, settings, fit, src.rotation, clip_path, tick, encode=not dry_run,
                     source_fps=src.fps).run()


def _take_timeline(src: SourceRecord, made: Result, settings: Settings) -> bool:
    """Record the decoding's damage and the shots on the source; False if nothing decoded."""
    tl = made.timeline
    if not tl.times:
        src.set(FAILED, "decode_error", "no frame could be decoded; the file is corrupt")
        return False
    if tl.decode_error and not src.reason:
        src.reason_code = "decode_error"  # a warning on the source while it yields clips
        src.reason = ("the video could not be decoded to its end (the file is damaged); "
                      "clips come from the readable part only")
    origin, fps = tl.times[0], settings.fps
    src.shots = [[origin + a / fps, origin + (b + 1) / fps] for a, b in made.shots]
    return True


def _remove_stale(out_dir: Path, clips: list[ClipRecord]) -> None:
    """Files of an earlier run of this source that this plan did not produce are stale."""
    planned = {Path(c.path).name for c in clips if c.path}
    for old in (out_dir.iterdir() if out_dir.is_dir() else []):
        if old.name not in planned:
            old.unlink()


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
        src.set(DROPPED, "all_filtered")
    else:
        src.set(DROPPED, "no_long_shot")


def _done(src, clips, timings):
    src.timings_json = json.dumps({k: round(v, 3) for k, v in timings.items()})
    return src, clips


def failed_record(path: str, error: BaseException, settings: Settings) -> tuple[SourceRecord, list[ClipRecord]]:
    """The verdict on a source whose processing raised: recorded against the file, the run goes on
    (and the next run tries it again: a failure is not a decision)."""
    detail = (str(error).strip().splitlines() or [""])[0]  # a reason for people, not a traceback
    code = reasons.for_exception(error)
    what = ("the disk is full" if code == "disk_full"
            else "the object store kept failing" if code == "storage_error"
            else "unexpected error while processing")
    todo = ("free space on the dataset's disk, then run the same command again" if code == "disk_full"
            else "run the same command again to retry it" if code == "storage_error"
            else "please report it with this file")
    src = SourceRecord(path=path, settings_fingerprint=settings.fingerprint())
    src.set(FAILED, code, f"{what} ({type(error).__name__}: {detail}); {todo}")
    return src, []
