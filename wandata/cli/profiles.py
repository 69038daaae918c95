"""``wandata profiles``: the model profiles table (wandata/profiles.py, docs/profiles.md)."""
from __future__ import annotations

import json

import click

from wandata.profiles import DEFAULT, NAMES, PROFILES


@click.command("profiles", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("names", nargs=-1, type=click.Choice(NAMES), metavar="[NAME]...")
@click.option("--json", "as_json", is_flag=True, help="Print every value of each profile as JSON.")
def profiles(names, as_json):
    """List the model profiles: the clips each Wan model trains on and its training inputs.

    `wandata ingest --profile NAME` makes clips for one; `export`, `check` and `train`
    refuse a dataset whose clips do not fit the --profile they are given. The sources of
    every number are in docs/profiles.md.
    """
    chosen = [PROFILES[n] for n in (names or NAMES)]
    if as_json:
        click.echo(json.dumps([p.to_dict() for p in chosen], indent=2))
        return
    rows = [("name", "fps", "frames", "buckets", "multiple", "budget", "vae", "inputs", "experts")]
    for p in chosen:
        experts = (f"high/low noise, boundary {p.boundary:g}" if p.experts else "")
        rows.append((p.name + (" (default)" if p.name == DEFAULT else ""), f"{p.fps:g}", f"<={p.frames}",
                     " ".join(f"{w}x{h}" for w, h in p.buckets), str(p.size_multiple),
                     "{}x{}".format(*p.budget_size), p.vae_name, ",".join(p.inputs), experts))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
