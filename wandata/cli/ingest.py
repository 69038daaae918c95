"""``wandata ingest``, ``wandata plan`` (= ``ingest --dry-run``) and ``wandata config``: the
commands that take the ingest settings (docs/quality.md for plan)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from wandata.cli.options import EXIT_ERROR, EXIT_FAILURES, EXIT_OK, ingest_options
from wandata.cli.options import engine_or_usage_error as _engine
from wandata.cli.options import settings_or_usage_error as _settings
from wandata import storage
from wandata.engine import EngineError
from wandata.profiles import NAMES as PROFILE_NAMES


@click.command()
@ingest_options
@click.option("--captioner", help="Caption the kept clips with this captioner after ingesting (see `wandata caption`).")
@click.option("--caption-opt", "caption_opts", multiple=True, metavar="KEY=VALUE",
              help="Option for --captioner (and prefix, suffix, trigger, max_chars); repeat for several.")
@click.option("--dry-run", is_flag=True, help="Write nothing: show what would be produced (same as `wandata plan`, "
                                              "with the same settings and engine).")
@click.pass_context
def ingest(ctx, sources, dataset, config, as_json, quiet, captioner, caption_opts, engine, ray_address,
           dry_run, **flags):
    """Cut SOURCES (files or folders) into verified Wan clips in the dataset directory.

    Every source and clip gets a manifest row with its status and, if it was not
    kept, the reason. A rerun skips finished sources; an interrupted run resumes.
    Every option acts or is refused: a value out of range, or a flag that the other
    settings make do nothing, exits 2 naming the option.
    Exit status: 0 all good, 3 some sources or clips failed (see the summary),
    1 the run itself failed, 2 bad usage.
    """
    from wandata.ingest.run import ingest as run_ingest

    if captioner and storage.is_url(str(dataset)):
        raise click.UsageError("--captioner works on a local dataset; a dataset in a bucket "
                               f"({dataset}) is not captioned yet (docs/storage.md)")
    if caption_opts and not captioner:
        raise click.UsageError("--caption-opt needs --captioner (it is an option of the captioner)")
    if dry_run:
        if captioner:
            # A dry run writes no clip, so there is nothing to caption; captioning the planned
            # clips would need them encoded, which is what --dry-run promises not to do.
            raise click.UsageError("--captioner has no effect with --dry-run (no clip is written to "
                                   "caption); run `wandata caption` after the ingest")
        return ctx.invoke(plan, sources=sources, dataset=dataset, config=config, as_json=as_json, quiet=quiet,
                          engine=engine, ray_address=ray_address, **flags)

    settings = _settings(config, **flags)
    engine = _engine(engine, settings, ray_address, flags.get("workers"))
    if captioner:
        from wandata.cli.caption import caption_after_ingest, check_caption_step
        caption_opts = check_caption_step(captioner, caption_opts)
    try:
        summary = run_ingest(list(sources), dataset, settings, progress=not quiet and not as_json, engine=engine)
    except (FileNotFoundError, PermissionError, EngineError, storage.StorageError, storage.MissingBackend) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(EXIT_ERROR)
    if captioner:  # the summary's to_dict() carries it into --json
        summary.captions = caption_after_ingest(dataset, captioner, caption_opts,
                                                progress=not quiet and not as_json, echo=not as_json)
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        _print_summary(summary)
    sys.exit(EXIT_FAILURES if summary.sources.get("failed") or summary.clips.get("failed") else EXIT_OK)


def _print_summary(s) -> None:
    def fmt(d):
        return ", ".join(f"{v} {k}" for k, v in d.items())
    retried = f", {s.retried} retried after a failure" if s.retried else ""
    click.echo(f"dataset: {s.dataset}  ({s.processed} processed{retried}, {s.skipped} already done, {s.seconds:.1f} s)")
    click.echo(f"sources: {fmt(s.sources)}")
    click.echo(f"clips:   {fmt(s.clips)}")
    if s.buckets:
        click.echo("buckets: " + ", ".join(f"{k}: {v}" for k, v in sorted(s.buckets.items())))
    for p in s.problems:
        code = f" [{p['code']}]" if p.get("code") else ""
        click.echo(f"  {p['status']:7s}{code} {p['file']}: {p['reason']}")


@click.group()
def config():
    """Show or write ingest settings."""


@config.command("show")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Show the settings after applying this TOML file.")
@click.option("--profile", type=click.Choice(PROFILE_NAMES),
              help="Show the settings of this model profile (`wandata profiles` lists them).")
@click.option("--toml", "as_toml", is_flag=True, help="Print as a TOML file you can edit and pass to --config.")
def config_show(config_path, profile, as_toml):
    """Print every setting with its value (defaults unless a config file or --profile changes
    them), and the chosen profile's own values (as JSON: under "profile_values")."""
    from wandata.profiles import get

    s = _settings(config_path, profile=profile)
    d = s.to_dict()
    p = get(s.profile)
    if as_toml:
        import tomli_w
        # Comments only: the file must stay one that --config takes.
        click.echo(f"# profile {p.name} ({p.title}): {p.summary()}; size multiple {p.size_multiple}, "
                   f"at most {p.pixel_budget} pixels a frame; inputs {', '.join(p.inputs)}")
        click.echo(tomli_w.dumps({"ingest": d}))
    else:
        click.echo(json.dumps({**d, "profile_values": p.to_dict()}, indent=2))


@click.command()
@ingest_options
def plan(sources, dataset, config, as_json, quiet, engine, ray_address, **flags):
    """Show what `wandata ingest SOURCES` would produce, without encoding or writing anything.

    Takes every option ingest takes (the same settings, engine and checks). Sources are
    decoded, shot-detected, planned and scored exactly as ingest does, so every drop (too
    short, a quality filter, a duplicate) is the one ingest would make. Also shows how much
    of the shots each clip length (81, 65, 49, 33, 17 frames) would keep.
    """
    from wandata.ingest.run import make_plan

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
    else:
        _print_plan(result)


def _print_plan(result) -> None:
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
