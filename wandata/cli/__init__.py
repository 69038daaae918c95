"""The ``wandata`` command: a thin shell over the library (parse, call, print).

One module per area: ``ingest`` (ingest, plan = ingest --dry-run, config), ``caption``
(caption, captions), ``export`` (export, check), ``train`` (train, validate), ``report``, ``review``,
``lora`` (lora convert), ``profiles``, ``clip`` (clip, query).
``options`` holds what they share. The same idea has one spelling in every command:
``-d/--dataset`` for the dataset, ``-o/--output`` for what the command writes.
"""
from __future__ import annotations

import click

from wandata import __version__
from wandata.cli.caption import caption, captions
from wandata.cli.clip import clip, query
from wandata.cli.compact import compact
from wandata.cli.export import check, export
from wandata.cli.ingest import config, ingest, plan
from wandata.cli.lora import lora
from wandata.cli.profiles import profiles
from wandata.cli.report import report
from wandata.cli.review import review
from wandata.cli.train import train, validate


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="wandata")
def main():
    """Turn raw videos into a Wan video-diffusion training set."""


for _command in (ingest, plan, config, profiles, caption, captions, export, check, train, validate, report, review, lora,
                 clip, query, compact):
    main.add_command(_command)


if __name__ == "__main__":
    main()
