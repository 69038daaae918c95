"""``template``: captions from a format string over manifest fields.

For trigger-word LoRAs (``"{trigger}, a video of {source_stem}"``), and, through
``render``, the prefix/suffix that the caption run puts around any captioner's text.
"""
from __future__ import annotations

import re
import string
from pathlib import Path

from wandata.dataset.records import ClipRecord
from wandata.caption.base import Captioner, CaptionerError, ClipInput, Option, Result


def field_names(fmt: str) -> set[str]:
    try:
        parsed = list(string.Formatter().parse(fmt))
    except ValueError as e:
        raise CaptionerError(f"template {fmt!r} is not a valid format string ({e}); "
                             "write literal braces as {{ and }}") from None
    return {re.split(r"[.\[]", name, maxsplit=1)[0] for _, name, _, _ in parsed if name is not None}


def check(fmt: str, fields: dict) -> None:
    """Fail before a run, not on every clip, if the template names an unknown field."""
    missing = sorted(n for n in field_names(fmt) if n not in fields)
    if "" in missing:
        raise CaptionerError(f"template {fmt!r} has an empty {{}}; name the field, e.g. {{source_stem}}")
    if missing:
        raise CaptionerError(f"template {fmt!r} uses {', '.join('{%s}' % m for m in missing)}, which "
                             f"{'is' if len(missing) == 1 else 'are'} not a field; fields: "
                             f"{', '.join(sorted(fields))}")


def known_fields(extra: dict | None = None) -> dict:
    """The fields every clip has, for checking a template before any clip is seen."""
    return ClipInput(ClipRecord("", "", "", 0, 0, 0.0, 0.0), Path(".")).fields(extra)


def render(fmt: str, fields: dict) -> str:
    try:
        return fmt.format(**fields)
    except (KeyError, IndexError, ValueError, AttributeError) as e:
        raise CaptionerError(f"template {fmt!r} could not be filled ({type(e).__name__}: {e})") from None


class TemplateCaptioner(Captioner):
    name = "template"
    batch_size = 64
    options = {
        "template": Option("{trigger}", "format string over manifest fields, e.g. '{trigger}, {source_stem}'"),
        "trigger": Option("", "value of {trigger}, the LoRA's trigger word"),
    }

    def __init__(self, **opts):
        super().__init__(**opts)
        check(self.opts["template"], known_fields())

    def caption_batch(self, items: list[ClipInput]) -> list[Result]:
        out = []
        for item in items:
            text = render(self.opts["template"], item.fields({"trigger": self.opts["trigger"]}))
            out.append(Result(text=text) if text.strip() else Result(
                error=f"the template {self.opts['template']!r} gave an empty caption for {item.clip_id}; "
                      "set --opt template=... (and --opt trigger=... if it uses {trigger})"))
        return out


# ---------------------------------------------------------------- prompts for vision-language models

DEFAULT_PROMPT = (
    "These are {k} frames sampled in order from a {duration_s:g}-second video clip. Write one paragraph "
    "describing the video for a text-to-video model: the main subject and its appearance, what happens "
    "and how things move, the setting, the camera framing and camera motion, the lighting and the visual "
    "style. Describe only what is visible. Answer with the description only, without any preamble.")

PROMPT_OPTIONS = {
    "prompt": Option(DEFAULT_PROMPT, "instruction sent with the frames; a format string over manifest "
                                     "fields plus {k}, the number of frames"),
    "prompt_file": Option("", "file holding the prompt (overrides prompt)"),
}


def prompt_template(opts: dict) -> str:
    """The prompt format string from the options, checked against the known fields."""
    fmt = opts["prompt"]
    if opts.get("prompt_file"):
        p = Path(opts["prompt_file"]).expanduser()
        try:
            fmt = p.read_text(encoding="utf-8-sig").strip()
        except OSError as e:
            raise CaptionerError(f"could not read the prompt file {p} ({e})") from None
    check(fmt, known_fields({"k": 0}))
    return fmt
