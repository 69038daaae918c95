"""``wandata export`` and ``wandata check``: thin shells over ``wandata.export`` (run.py and
check.py)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from wandata.cli.options import EXIT_ERROR, EXIT_FAILURES, EXIT_OK
from wandata.cli.options import EXIT_FAILURES as EXIT_PROBLEMS
from wandata.export import FORMATS, ExportError, available
from wandata.profiles import NAMES as PROFILE_NAMES

MAX_LISTED = 50  # a refusal over thousands of clips stays readable; --json has them all
PROFILE_HELP = ("Model profile the clips must fit (fps, frames, sizes; `wandata profiles`); "
                "recorded in wandata_export.json. Default: the profile the dataset was ingested for.")
ALLOW_HELP = "Go on (and say so) when the clips do not fit --profile."


def _profile(profile, allow_profile_mismatch):
    if allow_profile_mismatch and not profile:
        raise click.UsageError("--allow-profile-mismatch has no effect here: no --profile to mismatch")
    return profile


def _fail(message: str, items: list[str], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"ok": False, "error": message, "items": items}, indent=2, ensure_ascii=False))
    else:
        click.echo(f"error: {message}", err=True)
        for line in items[:MAX_LISTED]:
            click.echo(f"  {line}", err=True)
        if len(items) > MAX_LISTED:
            click.echo(f"  ... and {len(items) - MAX_LISTED} more (--json lists all)", err=True)
    sys.exit(EXIT_ERROR)


class FormatChoice(click.Choice):
    """The registered export formats, plugins' included, looked up only when ``--format`` is
    parsed: finding the plugins scans every installed package's entry points."""

    def __init__(self):
        super().__init__(FORMATS)

    @property
    def choices(self):
        return available()

    @choices.setter
    def choices(self, value):
        pass


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-d", "--dataset", default="dataset", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Dataset directory (with manifest.parquet).")
@click.option("-f", "--format", "fmt", type=FormatChoice(), default="jsonl", show_default=True,
              help="csv/json/jsonl: DiffSynth-Studio metadata; musubi: musubi-tuner TOML + JSONL; "
                   "diffusion-pipe: clip folders + dataset.toml; or a format a plugin registers "
                   "(entry point group wandata.exporters).")
# --out was the spelling before -o/--output became the one for what every command writes.
@click.option("-o", "--output", "--out", "out", type=click.Path(path_type=Path),
              help="Metadata file (csv/json/jsonl; default DATASET/metadata.FORMAT) or output folder "
                   "(musubi, diffusion-pipe; default DATASET/export/FORMAT). --out is the older spelling.")
@click.option("--split", type=click.FloatRange(0, 1, min_open=True, max_open=True), metavar="FRACTION",
              help="Hold out about this fraction of clips for validation, whole sources at a time.")
@click.option("--fallback-caption", metavar="TEXT",
              help="Caption for clips that have none (otherwise they are refused and listed).")
@click.option("--with", "with_inputs", multiple=True, metavar="INPUT[,INPUT...]",
              help="Conditioning inputs made from each clip, as extra columns: input_image, end_image, "
                   "reference_image, vace_reference_image (first/last frame, PNG), control_video:EXTRACTOR, "
                   "vace_video:EXTRACTOR (canny, depth, or a wandata.controls plugin). Written once into "
                   "DATASET/conditioning/ and reused (docs/export.md).")
@click.option("--control-opt", "control_opts", multiple=True, metavar="EXTRACTOR.KEY=VALUE",
              help="An option of a control extractor, e.g. canny.low=50 or depth.model=PATH; repeat for several.")
@click.option("--profile", type=click.Choice(PROFILE_NAMES), help=PROFILE_HELP)
@click.option("--allow-profile-mismatch", is_flag=True, help=ALLOW_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def export(dataset, fmt, out, split, fallback_caption, with_inputs, control_opts, profile, allow_profile_mismatch,
           as_json):
    """Write the kept clips as training metadata for a Wan trainer.

    Also writes wandata_export.json beside it: num_frames, buckets and the
    resolution mode the trainer must use so no clip is cropped. CSV refuses
    prompts pandas would read as NaN or numbers ("NA", "None", "null", ...);
    jsonl (the default) carries any text unchanged. See docs/export.md.

    Never writes over a file or folder it did not write, nor onto the dataset;
    a clip whose manifest path leads outside the dataset is left out and listed
    (reason code path_outside_root).

    With --profile, clips that do not fit that model profile (fps, frames, sizes;
    docs/profiles.md) are refused unless --allow-profile-mismatch.

    Exit status: 0 written, 3 written but some rows refused (listed), 1 refused
    or failed (the message says why), 2 bad usage.
    """
    from wandata.export import export as run_export

    try:
        summary = run_export(dataset, fmt, out, split, fallback_caption, with_inputs, control_opts,
                             profile=_profile(profile, allow_profile_mismatch),
                             allow_profile_mismatch=allow_profile_mismatch)
    except ExportError as e:
        _fail(str(e), e.items, as_json)
    except OSError as e:
        _fail(f"{e}; check the path and permissions", [], as_json)
    if as_json:
        click.echo(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        _print_export(summary)
    sys.exit(EXIT_FAILURES if summary["refused"] else EXIT_OK)


def _print_export(summary: dict) -> None:
    click.echo(f"{summary['format']}: {summary['train']} training clips -> {summary['metadata']}")
    if summary["validation"]:
        click.echo(f"validation: {summary['validation']} clips -> {summary['validation_metadata']}")
    buckets = ", ".join(f"{b['width']}x{b['height']}: {b['clips']}" for b in summary["buckets"])
    click.echo(f"buckets: {buckets}; {summary['num_frames']} frames; resolution mode {summary['resolution_mode']}")
    if "frame_bucket" in summary:
        linked = ", ".join(f"{n} {how}" for how, n in summary["linked"].items())
        click.echo(f"diffusion-pipe frame bucket: {summary['frame_bucket']}; clips: {linked}")
    if "conditioning" in summary:
        c = summary["conditioning"]
        click.echo(f"conditioning: {', '.join(c['inputs'])}: {c['made']} files made, {c['reused']} reused "
                   f"in {c['folder']}")
    click.echo(f"trainer settings: {summary['settings']}")
    for w in summary["warnings"]:
        click.echo(f"warning: {w}", err=True)
    for r in summary["refused"][:MAX_LISTED]:
        click.echo(f"refused {r['code']}: {r['message']}", err=True)
    if len(summary["refused"]) > MAX_LISTED:
        click.echo(f"  ... and {len(summary['refused']) - MAX_LISTED} more (--json lists all)", err=True)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("target", type=click.Path(exists=True, path_type=Path), metavar="[DIR_OR_METADATA]", required=False)
@click.option("-d", "--dataset", type=click.Path(exists=True, path_type=Path),
              help="The dataset (or export) to check: the same as giving DIR_OR_METADATA.")
@click.option("--num-frames", type=click.IntRange(min=1), help="Frames the trainer reads per clip.")
@click.option("--height", type=click.IntRange(min=1), help="Fixed training height (with --width).")
@click.option("--width", type=click.IntRange(min=1), help="Fixed training width (with --height).")
@click.option("--max-pixels", type=click.IntRange(min=1), help="Dynamic-resolution pixel limit.")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), help="Frame rate every clip should have.")
@click.option("--base-path", type=click.Path(file_okay=False, path_type=Path),
              help="Folder relative video paths start from (default: the metadata file's folder).")
@click.option("--jobs", type=click.IntRange(min=1), default=2, show_default=True, help="Clips decoded at once.")
@click.option("--profile", type=click.Choice(PROFILE_NAMES),
              help="Model profile every clip must fit: its fps, 4n+1 frames up to its length, sizes "
                   "(`wandata profiles`). A clip that does not is a profile_mismatch problem.")
@click.option("--allow-profile-mismatch", is_flag=True, help="Report profile mismatches as warnings.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def check(target, dataset, num_frames, height, width, max_pixels, fps, base_path, jobs, profile,
          allow_profile_mismatch, as_json):
    """Lint a Wan dataset: a wandata dataset or export, or hand-made metadata.

    DIR_OR_METADATA (or -d/--dataset) is a dataset folder, a metadata.csv/json/jsonl,
    a musubi or diffusion-pipe dataset TOML, or wandata_export.json. Every clip is decoded.
    Reports missing files, frame count / fps / size that disagree with the
    metadata or the trainer settings (wandata_export.json, or the flags), sizes
    not multiples of 16, prompts pandas turns into NaN, and duplicates.

    Exit status: 0 no errors (warnings allowed), 3 problems found, 1 nothing to
    check, 2 bad usage.
    """
    from wandata.export.check import CheckError, check as run_check

    if (target is None) == (dataset is None):
        raise click.UsageError("name what to check: DIR_OR_METADATA or -d/--dataset (one of them)")
    target = target or dataset
    if (height is None) != (width is None):
        raise click.UsageError("give --height and --width together (a fixed training size), or neither")
    try:
        report = run_check(target, num_frames, height, width, max_pixels, fps, base_path, jobs,
                           profile=_profile(profile, allow_profile_mismatch),
                           allow_profile_mismatch=allow_profile_mismatch)
    except CheckError as e:
        _fail(str(e), [], as_json)
    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        for p in report["problems"]:
            where = p["where"] or p["file"]
            click.echo(f"{p['severity']:7s} {p['code']}: {where}: {p['message']}\n          fix: {p['fix']}")
        status = "ok" if report["ok"] else "problems found"
        click.echo(f"{status}: {report['rows']} rows, {report['videos_decoded']} clips decoded, "
                   f"{report['errors']} errors, {report['warnings']} warnings")
    sys.exit(EXIT_OK if report["ok"] else EXIT_PROBLEMS)
