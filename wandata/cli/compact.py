"""``wandata compact``: fold a dataset's manifest parts into one file (docs/scale.md)."""
from __future__ import annotations

import json
from pathlib import Path

import click

from wandata.cli.options import EXIT_ERROR


@click.command()
@click.option("-d", "--dataset", default="dataset", show_default=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path), help="Dataset directory.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def compact(dataset, as_json):
    """Fold the manifest's parts (manifest.parts/, appended as ingest finishes each source) into
    manifest.parquet: the same table in one file. Ingest also does this on its own as parts pile up;
    run it before copying a dataset with tools that expect one file."""
    from wandata.dataset.manifest import compact as run

    try:
        result = run(dataset)
    except FileNotFoundError as e:
        click.echo(f"error: {e}", err=True)
        raise SystemExit(EXIT_ERROR) from None
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(f"{dataset}: {result['parts_folded']} parts folded, {result['rows']} rows in one file")
