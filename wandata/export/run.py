"""One export: the kept clips, the split, the trainer settings, then the format writes.

Every file is written to a temporary name and renamed into place, so a crash never leaves
a half-written metadata file for a trainer to read. An export never writes over what it did
not write, never onto the dataset, and never follows a path read from a file (the manifest,
an earlier ``wandata_export.json``) out of the folder it belongs to (``wandata.atomic``,
``wandata.confine``; docs/export.md, "What export refuses and why").
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from wandata import atomic
from wandata.atomic import OutputRefused
from wandata import controls
from wandata.confine import OUTSIDE_ROOT, OutsideRoot, inside
from wandata.controls import ControlError
from wandata.export import registry
from wandata.export.common import (Exporter, ExportError, Item, Output, collect, is_settings, refusal,
                                   profile_for, settings_dict, split_by_source)


def export(dataset_dir: Path, fmt: str, out: Path | None = None, split: float | None = None,
           fallback_caption: str | None = None, with_inputs=(), control_opts=(), profile: str | None = None,
           allow_profile_mismatch: bool = False) -> dict:
    """Export the dataset; returns a summary (what was written, counts, warnings).
    ``with_inputs``: ``--with`` values (conditioning inputs, ``wandata.controls``);
    ``control_opts``: ``--control-opt EXTRACTOR.KEY=VALUE`` options of their extractors."""
    exporter = registry.load(fmt)
    conditioning = _conditioning(exporter, dataset_dir, with_inputs, control_opts)
    dataset_dir = Path(dataset_dir)
    refused: list[dict] = []
    items = collect(dataset_dir, fallback_caption, refused)
    profile_entries = profile_for(dataset_dir, items, profile, allow_profile_mismatch)  # docs/profiles.md
    train, val, split_info = _split(items, split)
    out = exporter.output(Path(out) if out is not None else exporter.default_out(dataset_dir))
    o = Output(dataset_dir, out, *exporter.paths(out, bool(val)), train, val)
    settings = settings_dict(fmt, dataset_dir, o.settings, o.metadata, o.validation, train, val, split_info)
    settings.update(profile_entries)
    if conditioning is not None:
        settings["conditioning"] = _plan_conditioning(conditioning, items)
    settings_text = json.dumps(settings, indent=2, ensure_ascii=False) + "\n"
    # Every file's text is built and every output checked before anything is written,
    # so a refusal leaves nothing half-done.
    prepared = exporter.prepare(o)
    try:
        exporter.check_outputs(o)
    except OutputRefused as e:
        raise ExportError(str(e)) from None
    stale = _previous_validation(o.settings, refused)
    if conditioning is not None:
        # After every refusal that can still come: a refused export writes nothing.
        try:
            made = conditioning.make()
        except ControlError as e:
            raise ExportError(str(e)) from None
    try:
        extra = exporter.write(o, settings_text, prepared)
    except OutputRefused as e:
        raise ExportError(str(e)) from None
    if conditioning is not None:
        extra = {**extra, "conditioning": made}
    if stale is not None and stale != (o.validation.resolve() if o.validation else None):
        # A validation list from an earlier --split must not outlive it: a trainer
        # pointed at it would validate on clips it now trains on.
        stale.unlink(missing_ok=True)
        exporter.forget_validation(out)
    return {"format": fmt, "metadata": str(o.metadata),
            "validation_metadata": str(o.validation) if o.validation else None,
            "settings": str(o.settings), "train": len(train), "validation": len(val),
            "resolution_mode": settings["resolution_mode"], "buckets": settings["buckets"],
            "num_frames": settings["num_frames"], **extra, "refused": refused,
            "warnings": _warnings(items, exporter)}


def _conditioning(exporter: Exporter, dataset_dir: Path, with_inputs, control_opts):
    """The conditioning plan for ``--with`` (None without it), refused before any clip is read
    if an input is unknown or the format has no column for it."""
    if not with_inputs:
        if control_opts:
            raise ExportError("--control-opt is given without --with: name the control input it is for, "
                              "e.g. --with control_video:canny")
        return None
    try:
        specs, extractors = controls.parse(with_inputs, control_opts)
    except ControlError as e:
        raise ExportError(str(e)) from None
    refused = [why for s in specs if (why := exporter.conditioning_refusal(s.column))]
    if refused:
        raise ExportError(f"--with cannot be exported as {exporter.name}: " + "; ".join(refused), refused)
    return controls.Plan(Path(dataset_dir), specs, extractors)


def _plan_conditioning(plan, items: list[Item]) -> dict:
    """Give each item its conditioning files (planned, not yet written); the settings entry."""
    try:
        columns = plan.plan([(it.clip.clip_id, it.file, it.clip.num_frames, it.clip.decoded_digest) for it in items])
    except ControlError as e:
        raise ExportError(str(e)) from None
    for it in items:
        it.extra = columns[it.clip.clip_id]
    names = [s.column for s in plan.specs]
    return {"inputs": [s.text for s in plan.specs],
            "extractors": {name: ext.key() for name, ext in plan.extractors.items()},
            "extra_inputs": names,
            "data_file_keys": ["video", *(c for c in names if c in controls.DIFFSYNTH_FILE_KEYS)]}


def _split(items: list[Item], split: float | None) -> tuple[list[Item], list[Item], dict | None]:
    if split is None:
        return items, [], None
    train, val = split_by_source(items, split)
    return train, val, {"fraction": split, "by": "source_id",
                        "validation_sources": sorted({it.clip.source_id for it in val})}


def _previous_validation(settings_path: Path, refused: list[dict]) -> Path | None:
    """The validation list an earlier export in this place wrote, if it may be removed.

    Only if it has the name and place an export gives it: the file an edited settings file
    names could be anything. The earlier export may have been of another format.
    """
    if settings_path.is_symlink() or not is_settings(settings_path):
        return None   # not ours: leave everything alone
    value = json.loads(settings_path.read_text(encoding="utf-8")).get("validation_metadata_path")
    if not value:
        return None
    what = f"validation_metadata_path in {settings_path}"
    try:
        path = inside(settings_path.parent, str(value), what)
    except OutsideRoot as e:
        refused.append(refusal(OUTSIDE_ROOT, f"{e}; it was not removed", path=str(value), file=str(settings_path)))
        return None
    lexical = Path(os.path.abspath(settings_path.parent / str(value)))
    if (lexical.parent != Path(os.path.abspath(settings_path.parent)) or lexical.is_symlink()
            or not any(f.is_validation_name(lexical.name) for f in registry.installed())):
        refused.append(refusal(atomic.REFUSED, f"{what} names {value!r}, which is not a validation list an "
                               "export writes; it was not removed", path=str(value), file=str(settings_path)))
        return None
    return path


def _warnings(items: list[Item], exporter: Exporter) -> list[str]:
    out = []
    c = items[0].clip
    if c.num_frames % 4 != 1:
        out.append(f"clips have {c.num_frames} frames, not 4n+1: Wan trainers cut them to "
                   f"{(c.num_frames - 1) // 4 * 4 + 1}")
    sizes = {(it.clip.width, it.clip.height) for it in items}
    for w, h in sorted(sizes):
        if w % 16 or h % 16:
            out.append(f"bucket {w}x{h} is not a multiple of 16: trainers will crop it")
        elif why := exporter.bucket_warning(w, h):
            out.append(why)
    return out + exporter.clip_warnings(c)
