"""Option helpers shared by the command modules (kept out of ``cli`` so that the command
modules never import ``cli``, which ``python -m wandata.cli`` would load twice).

``ingest_options`` is the one set of options that every command taking the ingest settings
uses (``ingest``, ``plan``, and so ``ingest --dry-run``): the settings' flags are generated from
the fields of ``wandata.settings.Settings`` (their flag, help, range and choices live there), so
a setting cannot be added to one command and forgotten in another, nor be checked differently on
the command line and in a TOML file.
"""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import click

from wandata import storage
from wandata.settings import Settings, SettingsError, load_settings, parse_bucket
from wandata.engine import ENGINES, EngineError, make_engine

# Exit statuses shared by every command: 3 means the work ran but found or left problems.
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_FAILURES = 0, 1, 2, 3

FLAGS = {f.name: f.metadata["flag"] for f in fields(Settings)}


def _flag_error(key: str | None, message: str) -> click.ClickException:
    if key in FLAGS:
        return click.BadParameter(message, param_hint=f"'{FLAGS[key]}'")
    return click.UsageError(message)


def settings_or_usage_error(config, **flags):
    """The settings from defaults < ``config`` < flags; a bad value exits 2 naming its flag (or
    the file, when the file holds it). A flag given where the other settings make it do nothing
    (``--windows`` without ``--mode uniform``) is refused rather than ignored."""
    try:
        settings = load_settings(config, **flags)
    except SettingsError as e:
        if e.from_file:
            raise click.UsageError(str(e)) from None
        raise _flag_error(e.key, str(e)) from None
    for f in fields(Settings):
        applies = f.metadata.get("applies")
        if applies and flags.get(f.name) is not None and not applies[0](settings):
            raise click.UsageError(f"{FLAGS[f.name]} has no effect here: {applies[1]} "
                                   f"(mode={settings.mode}, detector={settings.detector})")
    return settings


def engine_or_usage_error(name: str, settings: Settings, ray_address: str | None, workers_flag):
    if name != "local" and workers_flag is not None:
        raise click.UsageError(f"--workers only applies to --engine local (--engine {name} runs one "
                                     "task per source and its cluster decides how many run at once)")
    try:
        return make_engine(name, settings.workers, ray_address)
    except EngineError as e:
        raise click.UsageError(str(e)) from None


def parse_buckets(ctx, param, value):
    """click callback for repeated ``--bucket WxH``."""
    if not value:
        return None
    try:
        return tuple(parse_bucket(v) for v in value)
    except SettingsError as e:
        raise click.BadParameter(str(e)) from None


def _default_text(f) -> str:
    d = f.default
    if f.name == "buckets":
        return " ".join(f"{w}x{h}" for w, h in d)
    if f.name == "filters":
        return ",".join(d)
    return str(d).lower() if isinstance(d, bool) else str(d)


def _setting_option(f):
    meta = f.metadata
    extra = f" Default {_default_text(f)}"
    if meta["range"] is not None:
        extra += f"; valid {meta['range']}"
    help_ = f"{meta['help']}{extra}."
    kind = type(f.default)
    if f.name == "buckets":
        return click.option(meta["flag"], f.name, multiple=True, callback=parse_buckets, metavar="WxH", help=help_)
    if kind is bool:
        flag = meta["flag"]
        return click.option(f"{flag}/--no-{flag[2:]}", f.name, default=None, help=help_)
    if meta["choices"]:
        return click.option(meta["flag"], f.name, type=click.Choice(meta["choices"]), help=help_)
    if kind is tuple:  # filters
        return click.option(meta["flag"], f.name, metavar="LIST", help=help_)
    return click.option(meta["flag"], f.name, type=kind, help=help_)


class PathOrURL(click.ParamType):
    """A local path, checked as ``click.Path`` checks it, or an object-store URL (``s3://``,
    ``gs://``, ``az://``: docs/storage.md), kept as text and checked when it is read."""

    def __init__(self, path: click.Path):
        self.path, self.name = path, path.name

    def convert(self, value, param, ctx):
        if isinstance(value, str) and storage.is_url(value):
            return value
        return self.path.convert(value, param, ctx)


def ingest_options(command):
    """Every ingest setting, plus where the sources run and what is printed."""
    opts = [
        click.argument("sources", nargs=-1, required=True,
                       type=PathOrURL(click.Path(exists=True, path_type=Path))),
        # -o/--output was the spelling before -d/--dataset became the dataset's in every
        # command; it stays so that existing scripts keep working.
        click.option("-d", "--dataset", "-o", "--output", "dataset", default="dataset", show_default=True,
                     type=PathOrURL(click.Path(file_okay=False, path_type=Path)),
                     help="Dataset directory (or s3://, gs://, az:// URL) to write (a plan or --dry-run only names the clip paths in "
                          "it); -o/--output is the older spelling of the same option."),
        click.option("--config", type=click.Path(dir_okay=False, path_type=Path),
                     help="TOML file with settings (see `wandata config show`); flags override it."),
        *[_setting_option(f) for f in fields(Settings)],
        click.option("--engine", type=click.Choice(ENGINES), default="local", show_default=True,
                     help="Where sources are processed: local (this machine, --workers processes) or ray "
                          "(one Ray task per source; pip install 'wandata[ray]'; see docs/ray.md)."),
        click.option("--ray-address", help="Ray cluster for --engine ray: auto (the running cluster) or "
                                           "ray://HOST:10001; default: RAY_ADDRESS, else a local Ray runtime."),
        click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
        click.option("--quiet", is_flag=True, help="No progress output."),
    ]
    for opt in reversed(opts):
        command = opt(command)
    return command

