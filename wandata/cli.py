"""The ``wandata`` command: a thin shell over the library."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from . import __version__
from .cli_options import EXIT_ERROR, EXIT_FAILURES, EXIT_OK
from .cli_options import parse_buckets as _buckets
from .cli_options import settings_or_usage_error as _settings
from .config import DETECTORS, MODES
from .engine import ENGINES, EngineError, make_engine


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="wandata")
def main():
    """Turn raw videos into a Wan video-diffusion training set."""


@main.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--output", "dataset", default="dataset", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Dataset directory to write.")
@click.option("--config", type=click.Path(dir_okay=False, path_type=Path),
              help="TOML file with settings (see `wandata config show`).")
@click.option("--frames", type=int, help="Frames per clip, 4k+1 (default 81).")
@click.option("--fps", type=float, help="Output frame rate (default 16, Wan's).")
@click.option("--mode", type=click.Choice(MODES), help="Windows per shot: head, chunk (default), uniform.")
@click.option("--windows", "windows_per_shot", type=int, help="Windows per shot for --mode uniform.")
@click.option("--detector", type=click.Choice(DETECTORS), help="Shot detector: auto (default: transnetv2 on a GPU, cascade on a CPU), transnetv2, cascade, adaptive, none.")
@click.option("--threshold", type=float, help="Transition probability threshold for transnetv2.")
@click.option("--trim", "boundary_trim_s", type=float, help="Seconds dropped at each shot boundary.")
@click.option("--bucket", "buckets", multiple=True, callback=_buckets,
              help="Bucket WIDTHxHEIGHT; repeat for several (default 832x480 and 480x832).")
@click.option("--size-multiple", type=int, help="Bucket sides must be multiples of this (16; 32 for Wan2.2-TI2V-5B).")
@click.option("--min-source-scale", type=float, help="Drop sources that would need upscaling beyond 1/this.")
@click.option("--crf", type=int, help="x264 quality (lower is better; default 18).")
@click.option("--preset", help="x264 preset (default medium).")
@click.option("--device", help="Device for the shot model: auto, cpu, cuda.")
@click.option("--workers", type=int, help="Sources processed in parallel (default 1).")
@click.option("--engine", type=click.Choice(ENGINES), default="local", show_default=True,
              help="Where sources are processed: local (this machine, --workers processes) or ray "
                   "(one Ray task per source; pip install 'wandata[ray]'; see docs/ray.md).")
@click.option("--ray-address", help="Ray cluster for --engine ray: auto (the running cluster) or "
                                    "ray://HOST:10001; default: RAY_ADDRESS, else a local Ray runtime.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--captioner", help="Caption the kept clips with this captioner after ingesting (see `wandata caption`).")
@click.option("--caption-opt", "caption_opts", multiple=True, metavar="KEY=VALUE",
              help="Option for --captioner (and prefix, suffix, trigger, max_chars); repeat for several.")
@click.option("--dry-run", is_flag=True, help="Write nothing: show what would be produced (same as `wandata plan`).")
@click.pass_context
def ingest(ctx, sources, dataset, config, as_json, quiet, captioner, caption_opts, engine, ray_address,
           dry_run, **flags):
    """Cut SOURCES (files or folders) into verified Wan clips in the dataset directory.

    Every source and clip gets a manifest row with its status and, if it was not
    kept, the reason. A rerun skips finished sources; an interrupted run resumes.
    Exit status: 0 all good, 3 some sources or clips failed (see the summary),
    1 the run itself failed, 2 bad usage.
    """
    from .pipeline import ingest as run_ingest

    if dry_run:
        from .cli_quality import plan
        return ctx.invoke(plan, sources=sources, dataset=dataset, config=config, as_json=as_json,
                          **flags)

    settings = _settings(config, **flags)
    try:
        engine = make_engine(engine, settings.workers, ray_address)
    except EngineError as e:
        raise click.UsageError(str(e)) from None
    if captioner:
        from .cli_caption import caption_after_ingest, check_caption_step
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
    click.echo(f"dataset: {s.dataset}  ({s.processed} processed, {s.skipped} already done, {s.seconds:.1f} s)")
    click.echo(f"sources: {fmt(s.sources)}")
    click.echo(f"clips:   {fmt(s.clips)}")
    if s.buckets:
        click.echo("buckets: " + ", ".join(f"{k}: {v}" for k, v in sorted(s.buckets.items())))
    for p in s.problems:
        click.echo(f"  {p['status']:7s} {p['file']}: {p['reason']}")


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


from .cli_export import check, export  # noqa: E402
main.add_command(export)
main.add_command(check)

from .cli_caption import caption, captions  # noqa: E402
main.add_command(caption)
main.add_command(captions)

from .cli_train import train, validate  # noqa: E402
main.add_command(train)
main.add_command(validate)

from .cli_quality import plan, report  # noqa: E402
main.add_command(plan)
main.add_command(report)


if __name__ == "__main__":
    main()
