"""The ``wandata`` command: a thin shell over the library."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from wandata import __version__
from wandata.cli.options import EXIT_ERROR, EXIT_FAILURES, EXIT_OK, ingest_options
from wandata.cli.options import engine_or_usage_error as _engine
from wandata.cli.options import settings_or_usage_error as _settings
from wandata.engine import EngineError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="wandata")
def main():
    """Turn raw videos into a Wan video-diffusion training set."""


@main.command()
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

    if caption_opts and not captioner:
        raise click.UsageError("--caption-opt needs --captioner (it is an option of the captioner)")
    if dry_run:
        if captioner:
            # A dry run writes no clip, so there is nothing to caption; captioning the planned
            # clips would need them encoded, which is what --dry-run promises not to do.
            raise click.UsageError("--captioner has no effect with --dry-run (no clip is written to "
                                   "caption); run `wandata caption` after the ingest")
        from wandata.cli.report import plan
        return ctx.invoke(plan, sources=sources, dataset=dataset, config=config, as_json=as_json, quiet=quiet,
                          engine=engine, ray_address=ray_address, **flags)

    settings = _settings(config, **flags)
    engine = _engine(engine, settings, ray_address, flags.get("workers"))
    if captioner:
        from wandata.cli.caption import caption_after_ingest, check_caption_step
        caption_opts = check_caption_step(captioner, caption_opts)
    try:
        summary = run_ingest(list(sources), dataset, settings, progress=not quiet and not as_json, engine=engine)
    except (FileNotFoundError, PermissionError, EngineError) as e:
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


@main.group()
def config():
    """Show or write ingest settings."""


@config.command("show")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Show the settings after applying this TOML file.")
@click.option("--toml", "as_toml", is_flag=True, help="Print as a TOML file you can edit and pass to --config.")
def config_show(config_path, as_toml):
    """Print every setting with its value (defaults unless a config file changes them)."""
    s = _settings(config_path)
    d = s.to_dict()
    if as_toml:
        import tomli_w
        click.echo(tomli_w.dumps({"ingest": d}))
    else:
        click.echo(json.dumps(d, indent=2))


from wandata.cli.export import check, export  # noqa: E402
main.add_command(export)
main.add_command(check)

from wandata.cli.caption import caption, captions  # noqa: E402
main.add_command(caption)
main.add_command(captions)

from wandata.cli.train import train, validate  # noqa: E402
main.add_command(train)
main.add_command(validate)

from wandata.cli.report import plan, report  # noqa: E402
main.add_command(plan)
main.add_command(report)


if __name__ == "__main__":
    main()
