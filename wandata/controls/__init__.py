"""Conditioning inputs derived from the clips for ``wandata export --with``: the first and last
frames as lossless images, and control videos made by pluggable extractors.

``base.py`` is the extractor interface, ``registry.py`` finds extractors by name (built-ins
``canny`` and ``depth``, plus the ``wandata.controls`` entry point group), one file per
built-in extractor, and ``conditioning.py`` plans and writes the files inside the dataset.
"""
from __future__ import annotations

from wandata.controls.base import ControlError, Extractor, Option
from wandata.controls.conditioning import (COLUMNS, DIFFSYNTH_FILE_KEYS, IMAGE_COLUMNS, VIDEO_COLUMNS, Plan, Spec,
                                           parse, valid_inputs)
from wandata.controls.registry import ENTRY_POINT_GROUP, available, make

__all__ = ["COLUMNS", "DIFFSYNTH_FILE_KEYS", "ENTRY_POINT_GROUP", "IMAGE_COLUMNS", "VIDEO_COLUMNS", "ControlError",
           "Extractor", "Option", "Plan", "Spec", "available", "make", "parse", "valid_inputs"]
