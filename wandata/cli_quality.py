"""``wandata plan``: what an ingest would produce, without writing clips (docs/quality.md)."""
from __future__ import annotations

import json
from pathlib import Path

import click

from .cli_options import parse_buckets as _buckets
from .cli_options import settings_or_usage_error as _settings
from .config import DETECTORS, MODES


@click.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--output", "dataset", default="dataset", show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Dataset directory the clips would go to (only names paths; nothing is written).")
@click.option("--config", type=click.Path(dir_okay=False, path_type=Path),
              help="TOML file with settings (see `wandata config show`), as for ingest.")
@click.option("--frames", type=int, help="Frames per clip, 4k+1 (default 81).")
@click.option("--mode", type=click.Choice(MODES), help="Windows per shot: head, chunk (default), uniform.")
@click.option("--windows", "windows_per_shot", type=int, help="Windows per shot for --mode uniform.")
@click.option("--detector", type=click.Choice(DETECTORS), help="Shot detector, as for ingest.")
@click.option("--bucket", "buckets", multiple=True, callback=_buckets,
              help="Bucket WIDTHxHEIGHT; repeat for several.")
@click.option("--min-source-scale", type=float, help="As for ingest.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan(sources, dataset, config, as_json, **flags):
    """Show what `wandata ingest SOURCES` would produce, without encoding or writing anything.

    Sources are decoded, shot-detected, planned and scored exactly as ingest does, so every
    drop (too short, a quality filter, a duplicate) is the one ingest would make. Also shows how
    much of the shots each clip length (81, 65, 49, 33, 17 frames) would keep.
    """
    from .dryrun import make_plan

    settings = _settings(config, **flags)
    show = None if as_json else (lambda f: click.echo(f"planning {Path(f).name} ...", err=True))
    result = make_plan(list(sources), dataset, settings, on_source=show)
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
    from .manifest import MANIFEST_NAME
    from .report import write

    if not (dataset / MANIFEST_NAME).exists():
        raise click.UsageError(f"{dataset} has no {MANIFEST_NAME}; run `wandata ingest` first")
    click.echo(str(write(dataset, output)))
