"""Write the curated clips as the files a Wan trainer reads, plus what it must be told; and
read such files back to lint them (``check.py``).

One file per format holds its writer and its reader: ``diffsynth.py`` (DiffSynth-Studio
csv/json/jsonl: columns ``video`` and ``prompt``), ``musubi.py`` (musubi-tuner dataset TOML +
JSONL), ``diffusion_pipe.py`` (clip folders + dataset.toml). ``registry.py`` finds a format by
name, a plugin's too; ``run.py`` runs one export; ``common.py`` holds what they share. Only
``kept`` clips are exported. ``wandata_export.json`` beside the output records num_frames,
buckets and the resolution mode, so a trainer reads the clips exactly as curated (see
docs/export.md).
"""
from __future__ import annotations

from wandata.export.common import (MIN_MAX_PIXELS, PANDAS_BOOL, PANDAS_NA, SCHEMA, SETTINGS_NAME, WAN_FPS,
                                   Exporter, ExportError, Item, collect, csv_hazard, is_settings, read_settings,
                                   resolution, settings_dict, split_by_source)
from wandata.export.diffsynth import DIFFSYNTH_FORMATS, diffsynth_args, metadata_text
from wandata.export.diffusion_pipe import dp_frame_bucket
from wandata.export.musubi import musubi_files
from wandata.export.registry import ENTRY_POINT_GROUP, FORMATS, available, load
from wandata.export.run import export

__all__ = ["DIFFSYNTH_FORMATS", "ENTRY_POINT_GROUP", "FORMATS", "MIN_MAX_PIXELS", "PANDAS_BOOL", "PANDAS_NA",
           "SCHEMA", "SETTINGS_NAME", "WAN_FPS", "ExportError", "Exporter", "Item", "available", "collect",
           "csv_hazard", "diffsynth_args", "dp_frame_bucket", "export", "is_settings", "load", "metadata_text",
           "musubi_files", "read_settings", "resolution", "settings_dict", "split_by_source"]
