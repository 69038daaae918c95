"""The quality filters: one table, one row per filter (docs/quality.md).

A row names the score it reads, which side of a bound fails, the setting holding that bound,
what a failure means for the user, and its reason code. ``failures`` and ``verdict`` only walk
the table: adding a filter is adding a row (plus its ``Reason`` member, its setting and its name
in ``settings.FILTERS``; tests/test_quality.py checks that they agree). The duplicate filter
compares clips with each other rather than a score with a bound: it is in ``duplicates``.
"""
from __future__ import annotations

from dataclasses import dataclass

from wandata.dataset.reasons import Reason
from wandata.quality.scores import Scores


@dataclass(frozen=True)
class Filter:
    name: str       # as listed in Settings.filters
    score: str      # the Scores field it reads
    what: str       # that score, as the reason names it
    below: bool     # fails below the bound (a min_ setting), else above it (a max_ setting)
    setting: str    # the Settings field holding the bound
    hint: str       # what a failure means, for the user
    code: Reason

    def fails(self, s: Scores, settings) -> bool:
        value, bound = getattr(s, self.score), getattr(settings, self.setting)
        if value < 0:
            return False  # -1: not measured
        return value < bound if self.below else value > bound

    def finding(self, s: Scores, settings) -> str:
        """The failure in one line ("dark: brightness 3 < min_brightness 25"): a disabled
        filter's flag, and how an enabled one's reason starts."""
        op = "<" if self.below else ">"
        return (f"{self.name}: {self.what} {getattr(s, self.score):g} {op} {self.setting} "
                f"{getattr(settings, self.setting):g}")

    def reason(self, s: Scores, settings) -> str:
        return self.code.message(finding=self.finding(s, settings), hint=self.hint, name=self.name,
                                 setting=self.setting)


# Order matters: a window failing several filters gets the first one's code, so the cause comes
# first. Exposure leads: a dark or flat picture also measures as blurred and still.
TABLE = (
    Filter("dark", "brightness", "brightness", True, "min_brightness", "the clip is too dark",
           Reason.filter_dark),
    Filter("bright", "brightness", "brightness", False, "max_brightness", "the clip is overexposed",
           Reason.filter_bright),
    Filter("flat", "contrast", "contrast", True, "min_contrast",
           "the picture is nearly uniform (fade, blank wall)", Reason.filter_flat),
    Filter("static", "motion", "motion", True, "min_motion", "the clip barely moves (a still)",
           Reason.filter_static),
    Filter("fast", "motion", "motion", False, "max_motion", "very fast or shaky motion",
           Reason.filter_fast),
    Filter("blur", "sharpness", "sharpness", True, "min_sharpness",
           "the picture is blurred or out of focus", Reason.filter_blur),
    Filter("text", "text", "text area", False, "max_text",
           "burned-in text (titles, subtitles) would be learned by the model", Reason.filter_text),
)


def failures(s: Scores, settings) -> list[tuple[str, str]]:
    """(filter name, reason) for every test the scores fail, enabled or not. Each reason names
    the score, its value, the threshold and the setting to change."""
    return [(f.name, f.reason(s, settings)) for f in TABLE if f.fails(s, settings)]


def verdict(s: Scores, settings) -> tuple[str, str, list[str]]:
    """(reason code and reason to drop, or "", "" to keep; flags: the failed tests whose filter
    is disabled). The code is the first failing filter's, in the table's order (the cause)."""
    failed = [f for f in TABLE if f.fails(s, settings)]
    drop = [f for f in failed if f.name in settings.filters]
    flags = [f.finding(s, settings) for f in failed if f.name not in settings.filters]
    if not drop:
        return "", "", flags
    return drop[0].code, "dropped by quality filter " + " / ".join(f.reason(s, settings) for f in drop), flags
