"""Shared fixtures: the sample data ingested once per test session."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from wandata.settings import Settings
from wandata.ingest.run import ingest

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "sample_data"


@pytest.fixture(scope="session")
def sample_dataset_ro(tmp_path_factory) -> Path:
    """The shipped sample data ingested with default settings. Read-only: copy it
    (``sample_dataset``) before changing anything."""
    out = tmp_path_factory.mktemp("sample") / "dataset"
    ingest([SAMPLE], out, Settings(), progress=False)
    return out


@pytest.fixture
def sample_dataset(sample_dataset_ro, tmp_path) -> Path:
    """A private, writable copy of the ingested sample dataset."""
    dst = tmp_path / "dataset"
    shutil.copytree(sample_dataset_ro, dst)
    return dst
