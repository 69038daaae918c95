"""``wandata report``: the HTML pages of a dataset (docs/quality.md)."""
from __future__ import annotations

from pathlib import Path

import click

from wandata.cli.options import EXIT_ERROR


@click.command()
@click.option("-d", "--dataset", default="dataset", show_default=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path), help="Dataset directory.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Index page to write (default DATASET/report.html); the other pages and the "
                   "thumbnails go in the folder beside it named after it (report_files/).")
@click.option("--per-page", default=200, show_default=True, type=click.IntRange(min=1),
              help="Kept clips on one page.")
def report(dataset, output, per_page):
    """Write the report: an index page (totals, histograms of shot lengths and scores, the first
    kept clips, the dropped ones grouped by reason) and pages of every kept clip (frames, caption,
    scores, bucket) with thumbnails as files. Opens from file://, no server."""
    from wandata.atomic import OutputRefused
    from wandata.dataset.manifest import MANIFEST_NAME
    from wandata.report.html import write

    if not (dataset / MANIFEST_NAME).exists():
        raise click.UsageError(f"{dataset} has no {MANIFEST_NAME}; run `wandata ingest` first")
    try:
        click.echo(str(write(dataset, output, per_page=per_page)))
    except OutputRefused as e:
        # Never over a file wandata did not write (docs/quality.md).
        click.echo(f"error: {e}", err=True)
        raise SystemExit(EXIT_ERROR) from None
