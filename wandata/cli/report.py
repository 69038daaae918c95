"""``wandata report``: the HTML page of a dataset (docs/quality.md)."""
from __future__ import annotations

from pathlib import Path

import click

from wandata.cli.options import EXIT_ERROR


@click.command()
@click.option("-d", "--dataset", default="dataset", show_default=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path), help="Dataset directory.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="HTML file to write (default DATASET/report.html).")
def report(dataset, output):
    """Write a self-contained HTML page: every kept clip (frames, caption, scores, bucket), the
    dropped ones grouped by reason, histograms of shot lengths and scores, and totals."""
    from wandata.atomic import OutputRefused
    from wandata.dataset.manifest import MANIFEST_NAME
    from wandata.report.html import write

    if not (dataset / MANIFEST_NAME).exists():
        raise click.UsageError(f"{dataset} has no {MANIFEST_NAME}; run `wandata ingest` first")
    try:
        click.echo(str(write(dataset, output)))
    except OutputRefused as e:
        # Never over a file wandata did not write (docs/quality.md).
        click.echo(f"error: {e}", err=True)
        raise SystemExit(EXIT_ERROR) from None
