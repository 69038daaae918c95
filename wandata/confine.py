"""Paths read back from files stay inside the folder they belong to.

A manifest, an export record, a caption sidecar or a config file is data that anyone can
edit (or that a broken tool wrote). A path in it such as ``../../x`` or ``/etc/passwd``
must never make wandata read, link, write or delete a file outside the root that the file
describes. Every such path goes through ``inside`` before it is used.
"""
from __future__ import annotations

import os
from pathlib import Path

# The reason code recorded against a row whose path was refused (see docs/export.md).
OUTSIDE_ROOT = "path_outside_root"


class OutsideRoot(ValueError):
    """A path read from a file leads outside its root; ``code`` is the recorded reason code."""

    code = OUTSIDE_ROOT

    def __init__(self, value: str, root: Path, what: str):
        self.value, self.root, self.what = value, root, what
        super().__init__(
            f"{what} {value!r} leads outside {root}; wandata only touches files inside it. "
            "Fix the entry (a path relative to that folder), or re-create the file with wandata")


def inside(root: str | os.PathLike, value: str | os.PathLike, what: str = "path") -> Path:
    """``root / value`` resolved, or ``OutsideRoot`` if it is absolute, empty or escapes ``root``.

    Symbolic links are followed before the check: a link inside the root that points out of
    it is as far outside as ``..`` is. ``what`` names the entry in the error ("clip path in
    manifest.parquet").
    """
    text = os.fspath(value)
    root_path = Path(root)
    if not text or "\x00" in text or os.path.isabs(text) or Path(text).drive:
        raise OutsideRoot(text, root_path, what)
    real_root = root_path.resolve()
    target = (real_root / text).resolve()
    if target != real_root and real_root not in target.parents:
        raise OutsideRoot(text, root_path, what)
    return target


def is_inside(root: str | os.PathLike, value: str | os.PathLike) -> bool:
    try:
        inside(root, value)
    except OutsideRoot:
        return False
    return True
