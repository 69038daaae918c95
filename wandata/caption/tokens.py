"""Caption length in the text encoder's tokens.

Wan encodes prompts with UMT5-XXL and reads at most 512 tokens (end-of-sequence
included); the rest of a longer caption is silently dropped in training. The real
tokenizer is used when it is on disk (never downloaded); otherwise an estimate
that errs on the long side, and the report says which.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

WAN_TEXT_LEN = 512
DEFAULT_TOKENIZER = "google/umt5-xxl"
TOKENIZER_ENV = "WANDATA_UMT5_TOKENIZER"

_PIECES = re.compile(r"[^\W\d_]+|\d+|[^\w\s]|_", re.UNICODE)


def estimate_tokens(text: str) -> int:
    """UMT5's SentencePiece vocabulary keeps most Latin-script words whole and splits
    long or rare ones; CJK text is about one piece per character. Plus EOS."""
    n = 1
    for m in _PIECES.finditer(text):
        w = m.group()
        if w.isascii():
            n += 1 + (len(w) - 1) // 6
        elif w[0].isalpha() and not _is_cjk(w[0]):
            n += 1 + (len(w) - 1) // 4
        else:
            n += len(w)
    return n


def _is_cjk(ch: str) -> bool:
    o = ord(ch)
    return 0x2E80 <= o <= 0x9FFF or 0xAC00 <= o <= 0xD7AF or 0xF900 <= o <= 0xFAFF or 0x3040 <= o <= 0x30FF


class TokenCounter:
    """Counts tokens with the UMT5 tokenizer if one can be loaded locally, else estimates.

    ``source``: a tokenizer folder or hub id; default ``$WANDATA_UMT5_TOKENIZER``, then
    ``google/umt5-xxl`` from the local Hugging Face cache. A source given explicitly
    that cannot be loaded is an error (the user asked for exact counts)."""

    def __init__(self, source: str | None = None, limit: int = WAN_TEXT_LEN):
        self.limit = limit
        self.tokenizer = None
        explicit = source or os.environ.get(TOKENIZER_ENV)
        name = explicit or DEFAULT_TOKENIZER
        try:
            from transformers import AutoTokenizer
            self.tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=True)
            self.method = f"tokenizer {name}"
        except Exception as e:  # noqa: BLE001 - no tokenizer on disk (or no transformers) means estimate
            if explicit:
                raise ValueError(f"could not load the tokenizer {name!r} from local files ({type(e).__name__}: "
                                 f"{e}); point --tokenizer at a folder with tokenizer files (Wan checkpoints "
                                 "ship one in google/umt5-xxl/), or omit it to use an estimate") from e
            self.method = "estimate"

    @property
    def exact(self) -> bool:
        return self.tokenizer is not None

    def count(self, text: str) -> int:
        if self.tokenizer is None:
            return estimate_tokens(text)
        return len(self.tokenizer(text, add_special_tokens=True)["input_ids"])


@dataclass
class TokenReport:
    method: str
    exact: bool
    limit: int
    captions: int = 0
    max_tokens: int = 0
    over: list[dict] = field(default_factory=list)  # {"clip_id", "tokens"}

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def token_report(captions: dict[str, str], counter: TokenCounter) -> TokenReport:
    """Token counts of ``{clip_id: caption}``; captions longer than the window are listed."""
    rep = TokenReport(method=counter.method, exact=counter.exact, limit=counter.limit)
    for clip_id, text in captions.items():
        if not text:
            continue
        n = counter.count(text)
        rep.captions += 1
        rep.max_tokens = max(rep.max_tokens, n)
        if n > counter.limit:
            rep.over.append({"clip_id": clip_id, "tokens": n})
    return rep

