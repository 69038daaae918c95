"""``wandata caption`` and ``wandata captions``: the command line of the captioning hooks."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from wandata.caption import CaptionerError, available, describe_options, make
from wandata.caption.text import DEFAULT_MAX_CHARS
from wandata.cli.options import EXIT_ERROR, EXIT_FAILURES, EXIT_OK
from wandata.dataset.records import KEPT

# Options of the caption run itself, accepted among a captioner's KEY=VALUE options
# where only those can be given (``wandata ingest --caption-opt``).
ENGINE_KEYS = ("prefix", "suffix", "trigger", "max_chars")


def parse_opts(ctx, param, values) -> dict[str, str]:
    out = {}
    for v in values or ():
        key, sep, value = v.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{v!r} is not KEY=VALUE (e.g. model=qwen2.5-vl)")
        out[key.strip()] = value
    return out


def check_name(ctx, param, value):
    if value is not None and value not in available():
        raise click.BadParameter(f"unknown captioner {value!r}; choose from {', '.join(available())} "
                                 "(`wandata captions list` shows their options)")
    return value


def split_engine_opts(name: str, opts: dict[str, str]) -> tuple[dict[str, str], dict]:
    """Separate run options (prefix, suffix, trigger, max_chars) from the captioner's own.
    ``trigger`` also goes to the captioner when it takes one (``template`` does)."""
    own = set(describe_options(name))
    cap = {k: v for k, v in opts.items() if k not in ENGINE_KEYS or k in own}
    run = {k: opts[k] for k in ENGINE_KEYS if k in opts and k not in own}
    if "trigger" in opts:
        run["trigger"] = opts["trigger"]
    if "max_chars" in run:
        try:
            run["max_chars"] = int(run["max_chars"])
        except ValueError:
            raise click.BadParameter(f"max_chars={run['max_chars']!r} is not a whole number") from None
    return cap, run


def build(name: str, opts: dict[str, str]):
    try:
        return make(name, opts)
    except CaptionerError as e:
        raise click.UsageError(str(e)) from None


def open_manifest(dataset: Path):
    from wandata.dataset.manifest import MANIFEST_NAME, Manifest
    if not (Path(dataset) / MANIFEST_NAME).exists():
        raise click.UsageError(f"no {MANIFEST_NAME} in {dataset}; run `wandata ingest SOURCES -d {dataset}` "
                               "first, or pass --dataset")
    return Manifest(dataset)


def token_counter(tokenizer: str | None):
    from wandata.caption.tokens import TokenCounter
    try:
        return TokenCounter(tokenizer)
    except ValueError as e:
        raise click.UsageError(str(e)) from None


def run_caption(dataset: Path, name: str, opts: dict[str, str], *, recaption=False, clip_ids=None,
                batch_size=None, max_chars=DEFAULT_MAX_CHARS, prefix="", suffix="", trigger=None,
                tokenizer=None, progress=True):
    """Build the captioner, caption the dataset, return the summary. Usage errors raise."""
    from wandata.caption import caption_clips
    manifest = open_manifest(dataset)
    counter = token_counter(tokenizer)
    if trigger is not None and "trigger" in describe_options(name):
        opts = {**opts, "trigger": trigger}
    cap = build(name, opts)
    try:
        return caption_clips(manifest, cap, recaption=recaption, clip_ids=clip_ids, batch_size=batch_size,
                             max_chars=max_chars, prefix=prefix, suffix=suffix,
                             fields={"trigger": trigger or ""}, token_counter=counter, progress=progress)
    finally:
        cap.close()


def print_summary(s) -> None:
    click.echo(f"captions: {s.captioned} made by {s.captioner}, {s.skipped} already there "
               f"(--recaption redoes them), {s.failed} failed ({s.seconds:.1f} s)")
    if s.truncated:
        click.echo(f"  {s.truncated} caption(s) were cut to --max-chars")
    for e in s.errors:
        code = f"[{e['code']}] " if e.get("code") not in (None, "caption_failed") else ""
        click.echo(f"  failed  {e['clip_id']}: {code}{e['reason']}")
    print_tokens(s.tokens)


def print_tokens(t: dict) -> None:
    if not t.get("captions"):
        return
    click.echo(f"tokens ({t['method']}): longest caption {t['max_tokens']} of the {t['limit']} "
               f"that Wan's UMT5 text encoder reads; {len(t['over'])} over")
    if not t["exact"]:
        click.echo("  (estimated: no UMT5 tokenizer found locally; pass --tokenizer DIR or set "
                   "WANDATA_UMT5_TOKENIZER for exact counts)")
    for o in t["over"]:
        click.echo(f"  too long  {o['clip_id']}: {o['tokens']} tokens (the rest is ignored in training; shorten it)")


@click.command()
@click.option("-d", "--dataset", default="dataset", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Dataset directory (holds manifest.parquet).")
@click.option("-c", "--captioner", "name", required=True, callback=check_name,
              help="Captioner name: sidecar, template, command, openai, transformers, or a plugin's.")
@click.option("-O", "--opt", "opts", multiple=True, callback=parse_opts, metavar="KEY=VALUE",
              help="Captioner option; repeat for several (`wandata captions list` shows them).")
@click.option("--recaption", is_flag=True, help="Caption clips that already have a caption too.")
@click.option("--clip", "clip_ids", multiple=True, help="Only this clip id; repeat for several.")
@click.option("--trigger", help="Value of {trigger} in templates (and the template captioner's trigger).")
@click.option("--prefix", default="", help="Template put before every caption, e.g. '{trigger}, '.")
@click.option("--suffix", default="", help="Template put after every caption.")
@click.option("--max-chars", type=click.IntRange(min=0), default=DEFAULT_MAX_CHARS, show_default=True,
              help="Cut longer captions at a sentence or word boundary (0: never).")
@click.option("--batch-size", type=click.IntRange(min=1), help="Clips per batch (and per manifest save); default per captioner.")
@click.option("--tokenizer", help="UMT5 tokenizer folder for exact token counts (default: estimate unless cached).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def caption(dataset, name, opts, recaption, clip_ids, trigger, prefix, suffix, max_chars, batch_size,
            tokenizer, as_json, quiet):
    """Caption the dataset's clips with captioner NAME and store the captions in the manifest.

    Clips that already have a caption are skipped unless --recaption. The
    manifest is saved after every batch, so an interrupted run keeps what it
    made. Exit status: 0 all captioned, 3 some clips failed (listed), 1 the
    captioner could not run, 2 bad usage.
    """
    try:
        s = run_caption(dataset, name, opts, recaption=recaption, clip_ids=set(clip_ids) or None,
                        batch_size=batch_size, max_chars=max_chars, prefix=prefix, suffix=suffix,
                        trigger=trigger, tokenizer=tokenizer, progress=not quiet and not as_json)
    except CaptionerError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(EXIT_ERROR)
    if as_json:
        click.echo(json.dumps(s.to_dict(), indent=2))
    else:
        print_summary(s)
    sys.exit(EXIT_FAILURES if s.failed else EXIT_OK)


def check_caption_step(name: str, values: tuple[str, ...]) -> dict[str, str]:
    """Check ``wandata ingest --captioner/--caption-opt`` before the ingest starts,
    so a typo fails in a second, not after an hour of cutting clips."""
    check_name(None, None, name)
    opts = parse_opts(None, None, values)
    build(name, split_engine_opts(name, opts)[0]).close()
    return opts


def caption_after_ingest(dataset: Path, name: str, opts: dict[str, str], *, progress: bool, echo: bool) -> dict:
    """The caption step of ``wandata ingest --captioner``; returns the summary as a dict.
    A captioner that cannot run is reported, not raised: the clips are already made."""
    cap_opts, run = split_engine_opts(name, opts)
    try:
        s = run_caption(dataset, name, cap_opts, progress=progress, **run)
    except (CaptionerError, click.UsageError) as e:
        msg = e.format_message() if isinstance(e, click.UsageError) else str(e)
        if echo:
            click.echo(f"captions: not made ({msg}); fix that and run `wandata caption --dataset {dataset} "
                       f"--captioner {name}`", err=True)
        return {"error": msg}
    if echo:
        print_summary(s)
    return s.to_dict()


@click.group()
def captions():
    """Export, import and inspect captions; list the captioners."""


@captions.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-d", "--dataset", default="dataset", show_default=True, type=click.Path(file_okay=False, path_type=Path))
def captions_export(file, dataset):
    """Write every kept clip's caption to FILE (CSV, UTF-8) for editing in a spreadsheet.

    Edit the caption column only, keep clip_id, and bring the file back with
    `wandata captions import FILE`.
    """
    from wandata.atomic import OutputRefused
    from wandata.caption.csvio import export_csv
    try:
        n = export_csv(open_manifest(dataset), file)
    except OutputRefused as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(EXIT_ERROR)
    click.echo(f"wrote {n} clip(s) to {file}")


@captions.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-d", "--dataset", default="dataset", show_default=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--ignore-unknown", is_flag=True, help="Skip rows whose clip id is not in the dataset.")
def captions_import(file, dataset, ignore_unknown):
    """Set captions from FILE (a CSV with clip_id and caption columns, e.g. an edited export).

    Changed captions are recorded as made by `manual`; an emptied cell clears the
    caption; other columns are ignored.
    """
    from wandata.caption.csvio import CSVImportError, import_csv
    try:
        r = import_csv(open_manifest(dataset), file, ignore_unknown=ignore_unknown)
    except CSVImportError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(EXIT_ERROR)
    skipped = f", {len(r.unknown)} unknown clip id(s) skipped" if r.unknown else ""
    click.echo(f"imported {file}: {len(r.changed)} caption(s) changed, {r.unchanged} unchanged{skipped}")


@captions.command("list")
def captions_list():
    """List the captioners (built-in and plugins) and their options."""
    for name, target in available().items():
        click.echo(f"{name}  ({target})")
        try:
            spec = describe_options(name)
        except CaptionerError as e:
            click.echo(f"    unavailable: {e}")
            continue
        for key, opt in spec.items():
            default = opt.default if not isinstance(opt.default, str) or len(opt.default) < 40 else "a long text"
            shown = f"; default {default!r}" if default not in ("", [], None) else ""
            click.echo(f"    {key:<18} {opt.help}{shown}")


@captions.command("report")
@click.option("-d", "--dataset", default="dataset", show_default=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--tokenizer", help="UMT5 tokenizer folder for exact counts (default: estimate unless cached).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def captions_report(dataset, tokenizer, as_json):
    """Count the tokens of every caption against the 512 that Wan's text encoder reads."""
    from wandata.caption.run import report
    manifest = open_manifest(dataset)
    rep = report(manifest, token_counter(tokenizer)).to_dict()
    kept = [c for c in manifest.all_clips() if c.status == KEPT and c.path]
    rep["uncaptioned"] = sum(not c.caption for c in kept)
    if as_json:
        click.echo(json.dumps(rep, indent=2))
        return
    click.echo(f"{rep['captions']} of {len(kept)} kept clips have a caption ({rep['uncaptioned']} without)")
    print_tokens(rep)
