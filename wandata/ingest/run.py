"""The run over many sources: discovery, the resume rule, the engine, the manifest.

``ingest`` finds the sources, hands them to the engine (``wandata.engine``) as
``source.process_source`` jobs, applies the rules that need every source (the same file twice,
near-duplicate clips) and, in a real run, is the only writer of the manifest, once per finished
source; finished sources are skipped and failed ones tried again. ``dry_run=True`` is the same
loop writing nothing: it returns an ``ingest.preview.Preview`` of what an ingest into an empty
dataset would write (``wandata plan``, ``ingest --dry-run``).
"""
from __future__ import annotations

import time
from contextlib import closing
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

from wandata import confine, quality, storage
from wandata.atomic import CLIPS_DIR
from wandata.dataset import totals
from wandata.dataset.manifest import Manifest
from wandata.dataset.records import DROPPED, FAILED, KEPT, ClipRecord, SourceRecord
from wandata.engine import LocalEngine
from wandata.ingest.discover import discover
from wandata.ingest.preview import Preview
from wandata.ingest.remote import Mirror, process_to_bucket
from wandata.ingest.source import failed_record, process_source
from wandata.media.encode import cleanup_partials
from wandata.settings import Settings


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
    t = totals.count(manifest.sources.values(), manifest.all_clips())
    for into, counts in ((summary.sources, t.sources), (summary.clips, t.clips), (summary.buckets, t.buckets)):
        for k, v in counts.items():
            into[k] = into.get(k, 0) + v
    summary.problems.extend(t.problems)
    return summary


def ingest(sources: list[str | Path], dataset: Path, settings: Settings, progress: bool = True,
           engine=None, dry_run: bool = False,
           on_source: Callable[[str], None] | None = None) -> Summary | Preview:
    """``engine``: a ``wandata.engine`` engine; default the local one with ``settings.workers``.
    ``dry_run``: nothing is encoded, deleted or written (not even the dataset folder) and every
    source is planned, done or not; returns a ``Preview``. ``on_source(path)`` is called as each
    source's result comes back (dry runs; a real run shows a progress bar instead)."""
    t0 = time.perf_counter()
    # A bucket (s3://...): clips are uploaded by each job, the manifest kept in a local
    # staging folder and uploaded after each source (ingest/remote.py, docs/storage.md).
    url = str(dataset) if storage.is_url(str(dataset)) else None
    mirror = Mirror(url) if url and not dry_run else None
    dataset = mirror.local if mirror else Path(dataset)
    run = _DryRun(settings, on_source) if dry_run else _Run(dataset, settings, progress, mirror)
    found = discover(sources, exclude=[url or dataset])
    todo = run.todo([p if storage.is_url(p) else str(p.resolve()) for p in found])
    engine = engine or LocalEngine(settings.workers)
    # Workers may run elsewhere (a Ray node): give them the absolute dataset path.
    job = (partial(process_to_bucket, settings=settings, url=url) if mirror else
           partial(process_source, settings=settings, dataset=dataset.resolve(), dry_run=dry_run))
    failed = partial(failed_record, settings=settings)  # recorded against the file; the run goes on
    # closing(): on Ctrl-C or an error the engine cancels the work nobody will record.
    with run, closing(engine.results(job, failed, todo, gpu=gpu_wanted(settings),
                                     progress_for=run.progress_for)) as results:
        for src, clips in results:
            run.record(src, clips)
    return run.finish(t0)


def make_plan(sources, dataset: Path, settings: Settings, on_source=None, engine=None) -> Preview:
    """What ``ingest`` would write, writing nothing: ``ingest(..., dry_run=True)``."""
    return ingest(sources, dataset, settings, progress=False, engine=engine, dry_run=True, on_source=on_source)


def same_content(src: SourceRecord, seen: dict[str, str]) -> str:
    """The path of an earlier kept source with the same bytes as ``src`` if ``src`` is kept (it is
    then the copy to drop), else ''; ``seen`` (content hash -> path) learns ``src``."""
    if src.status == KEPT and src.content_hash in seen and seen[src.content_hash] != src.path:
        return seen[src.content_hash]
    if src.content_hash:
        seen.setdefault(src.content_hash, src.path)
    return ""


def _drop_copy(src: SourceRecord, twin: str) -> list[ClipRecord]:
    src.set(DROPPED, "duplicate_content", other=twin)
    return []


class _Run:
    """A real run: the dataset is prepared, finished sources are skipped, each result is written
    to the manifest as it arrives (so a killed run loses only unfinished sources)."""

    def __init__(self, dataset: Path, settings: Settings, progress: bool, mirror: Mirror | None = None):
        self.dataset, self.settings, self.progress = dataset, settings, progress
        self.mirror = mirror  # the dataset is in a bucket; ``dataset`` is its local staging folder
        dataset.mkdir(parents=True, exist_ok=True)
        cleanup_partials(dataset / CLIPS_DIR)
        self.manifest = Manifest(dataset)
        self.manifest.remove_stale_temporaries()

    def todo(self, files: list[str]) -> list[str]:
        from tqdm import tqdm

        m, fp = self.manifest, self.settings.fingerprint()
        todo = [f for f in files if not m.done(f, fp)]
        # Failed with these very settings: tried again once per run (a file that fails every time
        # costs one attempt per run, never a loop).
        retried = sum(1 for f in todo if m.failed(f) and m.sources[f].settings_fingerprint == fp)
        self.summary = Summary(dataset=self.mirror.url if self.mirror else str(self.dataset),
                               skipped=len(files) - len(todo), retried=retried)
        self.seen = {s.content_hash: s.path for s in m.sources.values()
                     if s.content_hash and s.path not in todo and s.status == KEPT}
        # Progress in megabytes of source: smooth within a long file, fair across files.
        self.sizes = {f: _megabytes(f) for f in todo}
        self.total, self.finished = len(todo), 0.0
        self.bar = tqdm(total=sum(self.sizes.values()), unit="MB", desc="ingest", disable=not self.progress,
                        dynamic_ncols=True,
                        bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} MB [{elapsed}<{remaining}{postfix}]")
        return todo

    def progress_for(self, path: str) -> Callable[[float], None]:
        self.bar.set_description(f"ingest {Path(path).name[:24]}")

        def show(fraction: float) -> None:
            self.bar.n = self.finished + fraction * self.sizes[path]
            self.bar.refresh()
        return show

    def record(self, src: SourceRecord, clips: list[ClipRecord]) -> None:
        before = Mirror.listed(self.manifest.clips.get(src.path, []) + clips)
        twin = same_content(src, self.seen)
        if twin:
            for c in clips:
                if c.path:
                    (self.dataset / c.path).unlink(missing_ok=True)
            clips = _drop_copy(src, twin)
        _remove_replaced(self.dataset, self.manifest.clips.get(src.path, []), clips)
        self.manifest.put(src, clips)
        self.manifest.append([src.path])   # a part with this source's rows: cost flat in the dataset
        if self.mirror:
            self.mirror.saved(before, Mirror.listed(clips))
        self.summary.processed += 1
        kept = sum(c.status == KEPT for c in clips)
        self.finished += self.sizes[src.path]
        self.bar.n = self.finished
        self.bar.set_postfix_str(f"{self.summary.processed}/{self.total} files, last: {kept} clips")

    def __enter__(self):
        return self

    def __exit__(self, error_type, *_):
        if error_type is None:
            self.bar.n = self.bar.total
        self.bar.close()
        cleanup_partials(self.dataset / CLIPS_DIR)
        if self.mirror and error_type is not None:
            self.mirror.close()

    def finish(self, t0: float) -> Summary:
        # Also when nothing was processed: a run killed after its last source but before this
        # step must still end as an uninterrupted one would. Finding none is cheap.
        before = Mirror.listed(self.manifest.all_clips())
        if "duplicate" in self.settings.filters:
            quality.drop_duplicates(self.manifest, self.dataset, self.settings)
        if self.mirror:
            self.mirror.saved(before, Mirror.listed(self.manifest.all_clips()))
            self.mirror.close()
        self.summary.seconds = round(time.perf_counter() - t0, 2)
        return summarize(self.manifest, self.summary)


class _DryRun:
    """A dry run: the dataset is neither read nor written; every source is planned and the
    rules that need every source apply in path order, whatever order the results came in, so
    the preview is what an ingest of these sources into an empty dataset writes."""
    progress_for = None

    def __init__(self, settings: Settings, on_source: Callable[[str], None] | None):
        self.settings, self.on_source = settings, on_source
        self.results: dict[str, tuple[SourceRecord, list[ClipRecord]]] = {}

    def todo(self, files: list[str]) -> list[str]:
        self.files = sorted(files)
        return self.files

    def record(self, src: SourceRecord, clips: list[ClipRecord]) -> None:
        if self.on_source:
            self.on_source(src.path)
        self.results[src.path] = (src, clips)

    def __enter__(self):
        return self

    def __exit__(self, *_):
        pass

    def finish(self, t0: float) -> Preview:
        preview, seen = Preview(self.settings), {}
        for f in self.files:
            src, clips = self.results[f]
            twin = same_content(src, seen)
            preview.sources.append(src)
            preview.clips.extend(_drop_copy(src, twin) if twin else clips)
        if "duplicate" in self.settings.filters:
            for c, twin, d in quality.find_duplicates(preview.clips, self.settings.max_duplicate_distance):
                quality.mark_duplicate(c, twin, d, self.settings)
        return preview


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


def _megabytes(path: str) -> float:
    """For the progress bar only: a source that cannot be looked up now gets its verdict from
    its job (unreadable, storage_error), not from the bar."""
    try:
        return storage.size(path) / 1e6
    except OSError:
        return 0.0


def gpu_wanted(settings: Settings) -> bool | None:
    """Whether a source's job needs a GPU: True, False, or None for "one if there is one".
    Only the shot model uses it; the adaptive and none detectors never load it."""
    if settings.detector in ("adaptive", "none"):
        return False
    if settings.device == "auto":
        return None
    return settings.device.startswith("cuda")
