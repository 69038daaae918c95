"""Caption text cleaning: what every captioner's output goes through before the manifest."""
from __future__ import annotations

import re

# Runaway generations (a model repeating itself) are cut here; the token report
# is what checks the real limit of the text encoder.
DEFAULT_MAX_CHARS = 2000

_PAIRS = {'"': '"', "'": "'", "`": "`", "\u201c": "\u201d", "\u2018": "\u2019", "\u00ab": "\u00bb",
          "\u300c": "\u300d", "\u300e": "\u300f"}
# Chat models like to announce their answer ("Caption: ...", "**Description:** ...").
_LABEL = re.compile(r"^\W{0,3}(caption|description|prompt|video description)\W{0,3}:\W{0,3}\s*", re.I)


def clean_text(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> tuple[str, bool]:
    """Return (clean text, whether it was truncated).

    Control characters become spaces (they break CSV files and spreadsheets), runs
    of whitespace and newlines become one space, a leading "Caption:" label and
    quotes wrapped around the whole text are removed, and text longer than
    ``max_chars`` (0: no limit) is cut at a sentence or word boundary.
    """
    s = "".join(ch if ch.isprintable() else " " for ch in str(text))
    s = " ".join(s.split())
    s = _LABEL.sub("", s)
    s = _unquote(s)
    if max_chars and len(s) > max_chars:
        return _truncate(s, max_chars), True
    return s, False


def _unquote(s: str) -> str:
    while len(s) >= 2 and s[0] in _PAIRS and s[-1] == _PAIRS[s[0]]:
        inner = s[1:-1]
        # '"A" and "B"' starts and ends with quotes that do not wrap the whole text.
        if s[0] in inner or _PAIRS[s[0]] in inner:
            break
        s = inner.strip()
    return s


def _truncate(s: str, limit: int) -> str:
    cut = s[:limit]
    end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "))
    if end >= limit // 2:
        return cut[:end + 1]
    if s[limit:limit + 1].isspace():
        return cut.rstrip()
    space = cut.rfind(" ")
    return (cut[:space] if space > 0 else cut).rstrip(" ,;:-")
