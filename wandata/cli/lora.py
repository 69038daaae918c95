"""``wandata lora convert``: a thin shell over ``wandata.lora`` (docs/lora.md)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from wandata.cli.options import EXIT_ERROR, EXIT_OK
from wandata.lora.layouts import LAYOUTS, NAMES


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def lora():
    """Wan LoRA files: convert between the key layouts of DiffSynth-Studio, ComfyUI,
    diffusers and musubi-tuner."""


@lora.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("src", metavar="IN", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--to", "to", required=True, type=click.Choice(NAMES),
              help="; ".join(f"{n}: {layout.title}" for n, layout in LAYOUTS.items()) + ".")
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="File to write (.safetensors), or a folder for the default name "
                   "(default IN's name with .LAYOUT before .safetensors, beside IN).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def convert(src, to, output, as_json):
    """Write the LoRA file IN in another key layout.

    The input's layout is detected from its keys; a key of no known layout, or keys of
    two layouts, are refused and named. Rank and alpha are kept: a layout without an alpha
    (diffsynth, diffusers) gets alpha/rank folded into the up weights; one with an alpha
    (comfyui, musubi) gets alpha = rank when the input had none.

    Never writes over a file wandata did not write, nor over IN.

    Exit status: 0 written, 1 refused (the message says why), 2 bad usage.
    """
    from wandata.atomic import OutputRefused
    from wandata.lora.convert import LoRAError, convert_file

    try:
        summary = convert_file(src, to, output)
    except (LoRAError, OutputRefused) as e:
        if as_json:
            click.echo(json.dumps({"ok": False, "error": str(e)}, indent=2, ensure_ascii=False))
        else:
            click.echo(f"error: {e}", err=True)
        sys.exit(EXIT_ERROR)
    if as_json:
        click.echo(json.dumps({"ok": True, **summary}, indent=2, ensure_ascii=False))
    else:
        rank = summary["rank"]
        how = ("alpha/rank folded into the up weights" if summary["scale_folded_into_up"]
               else "alpha written" if LAYOUTS[to].has_alpha else "scale 1, nothing folded")
        click.echo(f"{summary['layout_in']} -> {summary['layout_out']}: {summary['modules']} modules, "
                   f"rank {rank}, {how} -> {summary['output']}")
    sys.exit(EXIT_OK)
