"""Captioning hooks: one small interface, many captioners, found by name.

A captioner turns clips into text. It receives a batch of ``ClipInput`` and
returns one ``Result`` per clip, in order, each with the text or the reason it
has none. A per-clip failure is a ``Result`` with ``error`` set, never an
exception, so one bad clip cannot end a run over thousands.

Captioners are found by name: the built-ins below, plus any that a package
registers under the Python entry point group ``wandata.captioners``::

    [project.entry-points."wandata.captioners"]
    mine = "my_package.module:MyCaptioner"

The target is either a ``Captioner`` subclass (constructed with the user's
``key=value`` options) or a plain function ``fn(clip: ClipInput, **options) -> str``.
"""
from __future__ import annotations

from wandata.caption.base import (Captioner, CaptionerError, ClipInput, FunctionCaptioner, Option, Result,
                                  as_bool, resolve_options)
from wandata.caption.registry import BUILTINS, ENTRY_POINT_GROUP, available, describe_options, load, make
from wandata.caption.run import CaptionSummary, caption_clips

__all__ = ["BUILTINS", "ENTRY_POINT_GROUP", "CaptionSummary", "Captioner", "CaptionerError", "ClipInput",
           "FunctionCaptioner", "Option", "Result", "as_bool", "available", "caption_clips", "describe_options",
           "load", "make", "resolve_options"]
