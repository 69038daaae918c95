"""The caption run: pick the clips, call the captioner batch by batch, save.

``caption_clips`` is a step any chain can call with an open ``Manifest``. The
batch's sources are appended to the manifest as a part (atomically) after every batch, so an interrupted run keeps
the captions already made and a rerun picks up the clips still without one.
A clip whose manifest path leads outside the dataset is never handed to a
captioner (nothing outside is read): it is recorded as failed with the code
``path_outside_root``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from wandata.confine import OUTSIDE_ROOT, OutsideRoot, inside
from wandata.dataset import review
from wandata.dataset.records import KEPT, ClipRecord
from wandata.caption.base import Captioner, CaptionerError, ClipInput, Result
from wandata.caption.template import check, known_fields, render
from wandata.caption.text import DEFAULT_MAX_CHARS, clean_text
from wandata.caption.tokens import TokenCounter, TokenReport, token_report

if TYPE_CHECKING:
    from wandata.dataset.manifest import Manifest


@dataclass
class CaptionSummary:
    captioner: str = ""
    captioned: int = 0
    skipped: int = 0           # already had a caption (no --recaption)
    failed: int = 0
    truncated: int = 0         # cut to max_chars
    seconds: float = 0.0
    errors: list[dict] = field(default_factory=list)   # {"clip_id", "path", "reason", "code"}
    tokens: dict = field(default_factory=dict)         # TokenReport.to_dict() over the captions of this run

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def clips_to_caption(manifest: Manifest, recaption: bool = False,
                     clip_ids: set[str] | None = None) -> tuple[list[ClipRecord], int]:
    """Kept clips with a file, minus those already captioned unless ``recaption``. A clip
    rejected in ``wandata review`` is not captioned, and one whose caption a person wrote there
    is never recaptioned (skipped)."""
    todo, skipped = [], 0
    decisions = review.fold(review.read(manifest.dir).entries)
    for c in manifest.all_clips():
        if c.status != KEPT or not c.path or (clip_ids is not None and c.clip_id not in clip_ids):
            continue
        r = review.resolve(c, decisions.get(c.clip_id))
        if r.rejected:
            continue
        if (c.caption and not recaption) or r.edited:
            skipped += 1
        else:
            todo.append(c)
    return todo, skipped


def caption_clips(manifest: Manifest, captioner: Captioner, *, recaption: bool = False,
                  clip_ids: set[str] | None = None, batch_size: int | None = None,
                  max_chars: int = DEFAULT_MAX_CHARS, prefix: str = "", suffix: str = "",
                  fields: dict | None = None, token_counter: TokenCounter | None = None,
                  progress: bool = True) -> CaptionSummary:
    """Caption the manifest's kept clips with ``captioner`` and save after each batch.

    ``prefix``/``suffix`` are templates (``{trigger}, ``) put around every caption;
    ``fields`` adds template values such as ``trigger``. A clip whose captioner
    result is an error keeps its old caption (if any) and is listed in the summary.
    A ``CaptionerError`` (the captioner cannot work at all) ends the run; other
    exceptions from a batch are recorded against that batch's clips.
    """
    from tqdm import tqdm

    fields = dict(fields or {})
    for fmt in (prefix, suffix):
        check(fmt, known_fields(fields))
    t0 = time.perf_counter()
    todo, skipped = clips_to_caption(manifest, recaption, clip_ids)
    label = captioner.label() if callable(getattr(captioner, "label", None)) else captioner.name
    wrapped = bool(prefix or suffix)
    summary = CaptionSummary(captioner=label + ("+template" if wrapped else ""), skipped=skipped)
    size = max(1, batch_size or getattr(captioner, "batch_size", 1) or 1)
    done: dict[str, str] = {}
    # the manifest's key of each clip's source (a clip's source_path is as ingest saw it, and a
    # moved dataset's sources can be keyed otherwise)
    owner = {id(c): path for path, clips in manifest.clips.items() for c in clips}
    bar = tqdm(total=len(todo), unit="clip", desc=f"caption {label[:30]}", disable=not progress,
               dynamic_ncols=True)
    try:
        for start in range(0, len(todo), size):
            batch = []
            for c in todo[start:start + size]:
                try:
                    inside(manifest.dir, c.path, f"clip path of {c.clip_id} in the manifest")
                except OutsideRoot as e:
                    summary.failed += 1
                    summary.errors.append({"clip_id": c.clip_id, "path": c.path, "reason": str(e),
                                           "code": OUTSIDE_ROOT})
                    continue
                batch.append(c)
            items = [ClipInput(c, manifest.dir) for c in batch]
            for clip, item, res in zip(batch, items, _run_batch(captioner, items) if items else []):
                text, cut = clean_text(res.text, max_chars) if res.ok else ("", False)
                if res.ok and not text:
                    res = Result(error=f"{label} gave an empty caption for {clip.clip_id}")
                if not res.ok:
                    summary.failed += 1
                    summary.errors.append({"clip_id": clip.clip_id, "path": clip.path, "reason": res.error,
                                           "code": "caption_failed"})
                    continue
                if wrapped:
                    f = item.fields(fields)
                    text = clean_text(render(prefix, f) + text + render(suffix, f), 0)[0]
                clip.caption, clip.captioner = text, summary.captioner
                summary.captioned += 1
                summary.truncated += cut
                done[clip.clip_id] = text
            if batch:
                # A part with the batch's sources (their rows whole), not the whole table: a
                # batch costs what its sources' rows cost, at 100 clips or a million.
                manifest.append({owner[id(c)] for c in batch})
            bar.update(len(todo[start:start + size]))
            bar.set_postfix_str(f"{summary.failed} failed", refresh=False)
    finally:
        bar.close()
    summary.tokens = token_report(done, token_counter or TokenCounter()).to_dict()
    summary.seconds = round(time.perf_counter() - t0, 2)
    return summary


def _run_batch(captioner: Captioner, items: list[ClipInput]) -> list[Result]:
    try:
        results = list(captioner.caption_batch(items))
    except (CaptionerError, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001 - a crash on one batch must not lose the others
        reason = f"{type(e).__name__}: {e}"
        return [Result(error=f"the captioner failed on the batch holding {it.clip_id} ({reason})") for it in items]
    if len(results) != len(items):
        raise CaptionerError(f"captioner {captioner.name!r} returned {len(results)} results for "
                             f"{len(items)} clips; caption_batch must return one Result per clip, in order")
    return [r if isinstance(r, Result) else Result(text=str(r)) for r in results]


def report(manifest: Manifest, token_counter: TokenCounter | None = None) -> TokenReport:
    """Token counts over every kept clip's current caption."""
    caps = {c.clip_id: c.caption for c in review.reviewed(manifest.dir, manifest.all_clips())
            if c.status == KEPT and c.caption}
    return token_report(caps, token_counter or TokenCounter())
