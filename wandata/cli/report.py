"""``wandata plan``: what an ingest would produce, without writing clips (docs/quality.md)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from wandata.cli.options import EXIT_ERROR, ingest_options
from wandata.cli.options import engine_or_usage_error as _engine
from wandata.cli.options import settings_or_usage_error as _settings
from wandata.engine import EngineError


@click.command()
@ingest_options
def plan(sources, dataset, config, as_json, quiet, engine, ray_address, **flags):
    """Show what `wandata ingest SOURCES` would produce, without encoding or writing anything.

    Takes every option ingest takes (the same settings, engine and checks). Sources are
    decoded, shot-detected, planned and scored exactly as ingest does, so every drop (too
    short, a quality filter, a duplicate) is the one ingest would make. Also shows how much
    of the shots each clip length (81, 65, 49, 33, 17 frames) would keep.
    """
    from wandata.ingest.preview import make_plan

    settings = _settings(config, **flags)
    runner = _engine(engine, settings, ray_address, flags.get("workers"))
    show = None if as_json or quiet else (lambda f: click.echo(f"planned {Path(f).name}", err=True))
    try:
        result = make_plan(list(sources), dataset, settings, on_source=show, engine=runner)
    except EngineError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(EXIT_ERROR)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    for s in result.sources:
        crop = f", black bars cropped to {s.crop[2]}x{s.crop[3]}" if s.crop else ""
        click.echo(f"{s.path}: {s.status}{crop}{' - ' + s.reason if s.reason else ''}")
        for c in result.clips:
            if c.source_path == s.path:
                span = f"{c.start_s:7.2f}-{c.end_s:7.2f} s" if c.window_index >= 0 else " " * 17
                what = c.path if c.status == "kept" else c.reason
                click.echo(f"  shot {c.shot_index:3d} {span} {c.bucket:9s} {c.status:7s} {what}")
    t = result.totals()
    click.echo(f"\nclips: {t['clips']}  ({t['seconds']} s kept)")
    for key in ("by_bucket", "by_orientation", "by_frames", "dropped_by"):
        if t[key]:
            click.echo(f"  {key.replace('_', ' ')}: " + ", ".join(f"{k}: {v}" for k, v in sorted(t[key].items())))
    click.echo("\nmaterial each clip length would keep (before quality filters):")
    for m in result.material():
        click.echo(f"  {m['frames']:3d} frames ({m['seconds_per_clip']:.2f} s): {m['windows']:4d} clips, "
                   f"{m['seconds']:8.1f} s = {100 * m['share_of_shots']:5.1f} % of the shots "
                   f"({m['shots_usable']} shots long enough)")


@click.command()
@click.option("--dataset", default="dataset", show_default=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path), help="Dataset directory.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="HTML file to write (default DATASET/report.html).")
def report(dataset, output):
    """Write a self-contained HTML page: every kept clip (frames, caption, scores, bucket), the
    dropped ones grouped by reason, histograms of shot lengths and scores, and totals."""
    from wandata.atomic import OutputRefused
    from wandata.cli.options import EXIT_ERROR
    from wandata.dataset.manifest import MANIFEST_NAME
    from wandata.report import write

    if not (dataset / MANIFEST_NAME).exists():
        raise click.UsageError(f"{dataset} has no {MANIFEST_NAME}; run `wandata ingest` first")
    try:
        click.echo(str(write(dataset, output)))
    except OutputRefused as e:
        # Never over a file wandata did not write (docs/quality.md).
        click.echo(f"error: {e}", err=True)
        raise SystemExit(EXIT_ERROR) from None
