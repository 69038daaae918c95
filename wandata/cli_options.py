"""Option helpers shared by the command modules (kept out of ``cli`` so that the command
modules never import ``cli``, which ``python -m wandata.cli`` would load twice)."""
from __future__ import annotations

import click

from .config import SettingsError, load_settings, parse_bucket

# Exit statuses shared by every command: 3 means the work ran but found or left problems.
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_FAILURES = 0, 1, 2, 3


def settings_or_usage_error(config, **flags):
    try:
        return load_settings(config, **flags)
    except SettingsError as e:
        raise click.UsageError(str(e)) from None


def parse_buckets(ctx, param, value):
    """click callback for repeated ``--bucket WxH``."""
    if not value:
        return None
    try:
        return tuple(parse_bucket(v) for v in value)
    except SettingsError as e:
        raise click.BadParameter(str(e)) from None
