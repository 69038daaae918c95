"""Writing outputs without ever destroying what wandata did not write.

Two rules, one place (docs/export.md, "What export refuses and why"):

* Every file is written under a temporary name in its own folder, flushed to disk
  (fsync) and renamed over the old one, so a reader sees the old file or the new one,
  never half of one.
* An output may only replace what wandata itself wrote there. A file output is replaced
  only if nothing is at its path or ``owned(path)`` recognises it as ours (each kind of
  output says how: the export settings' ``schema``, the report's generator tag, the
  captions CSV header...). A folder output is replaced only if it does not exist, is
  empty, or carries the marker of that same kind of output. In no case is the output the
  dataset, a folder holding the dataset, its manifest, or anything inside its clips
  folder. A refusal raises ``OutputRefused`` and touches nothing.

A folder is replaced by building the new one beside it and swapping it in; the old one is
removed only after the swap succeeded.
"""
from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

MANIFEST_NAME = "manifest.parquet"   # the dataset's manifest (wandata.dataset.manifest)
CLIPS_DIR = "clips"                  # where ingest writes the clips (wandata.ingest.source)
REFUSED = "output_not_ours"          # the reason code of a refused output


class OutputRefused(ValueError):
    """The output path holds something wandata did not write (or is the dataset); nothing was touched."""

    code = REFUSED

    def __init__(self, path: Path, why: str, fix: str):
        self.path = Path(path)
        super().__init__(f"refusing to write {path}: {why}. Nothing was changed; {fix}")


# --- files ---------------------------------------------------------------------------------

def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def fsync_dir(folder: Path) -> None:
    # The rename is durable only once the folder's entry is on disk; not every
    # filesystem lets a folder be opened for that, and then the rename still happened.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def replace(tmp: Path, final: Path) -> None:
    """Flush ``tmp`` to disk and rename it over ``final`` (atomic on one filesystem)."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)
    fsync_dir(Path(final).parent)


def write_bytes(path: Path, data: bytes, check: Callable[[Path], None] | None = None) -> None:
    """Write ``data`` under a temporary name, run ``check(tmp)``, then rename into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        if check is not None:
            check(tmp)
        replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str, check: Callable[[Path], None] | None = None,
               encoding: str = "utf-8") -> None:
    """``write_bytes`` of ``text`` encoded as given; line ends are written as they are."""
    write_bytes(path, text.encode(encoding), check)


# --- whose is it ---------------------------------------------------------------------------

def _real(p: Path) -> Path:
    return Path(os.path.realpath(p))


def _within(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def protect_dataset(path: Path, dataset: Path | None, what: str) -> None:
    """Refuse an output that is the dataset, holds it, or lies in its clips folder or on its manifest."""
    if dataset is None:
        return
    out, data = _real(Path(path)), _real(Path(dataset))
    if _within(data, out):
        raise OutputRefused(path, f"the {what} would be the dataset {dataset} or a folder holding it",
                            "choose an --out outside the dataset, or a new folder inside it")
    if _within(out, data / CLIPS_DIR):
        raise OutputRefused(path, f"it is inside the clips folder of the dataset {dataset}",
                            "write outputs beside the clips, not among them")
    if out == data / MANIFEST_NAME:
        raise OutputRefused(path, f"it is the manifest of the dataset {dataset}", "choose another output path")


def check_file(path: Path, owned: Callable[[Path], bool], *, dataset: Path | None = None,
               what: str = "output file", how: str = "") -> None:
    """Raise ``OutputRefused`` unless ``path`` may be (over)written with a new ``what``.

    ``how`` says how ours is recognised, for the message.
    """
    path = Path(path)
    protect_dataset(path, dataset, what)
    if path.name == MANIFEST_NAME:
        raise OutputRefused(path, "it is named like a dataset manifest", "choose another output path")
    if path.is_symlink():
        raise OutputRefused(path, "it is a symbolic link (replacing it would cut the link)",
                            "remove the link or choose another output path")
    if not path.exists():
        return
    if not path.is_file():
        raise OutputRefused(path, "something that is not a file is there", "choose another output path")
    if not owned(path):
        raise OutputRefused(path, f"it exists and was not written by wandata as a {what}"
                            + (f" ({how})" if how else ""),
                            "move it away, or choose another output path")


def _holds_manifest(folder: Path) -> Path | None:
    for root, _dirs, files in os.walk(folder):   # does not follow links into other folders
        if MANIFEST_NAME in files:
            return Path(root) / MANIFEST_NAME
    return None


def check_dir(path: Path, owned: Callable[[Path], bool], *, dataset: Path | None = None,
              what: str = "output folder", how: str = "") -> None:
    """Raise ``OutputRefused`` unless the folder ``path`` may be filled or replaced with a new ``what``."""
    path = Path(path)
    protect_dataset(path, dataset, what)
    if path.is_symlink():
        raise OutputRefused(path, "it is a symbolic link", "give the real folder, or another one")
    if not path.exists():
        return
    if not path.is_dir():
        raise OutputRefused(path, "a file is there, not a folder", "choose another output folder")
    if not any(path.iterdir()):
        return
    if not owned(path):
        raise OutputRefused(path, f"the folder is not empty and was not written by wandata as a {what}"
                            + (f" ({how})" if how else ""),
                            "choose a new or empty folder, or move its files away")
    found = _holds_manifest(path)
    if found is not None:
        raise OutputRefused(path, f"it holds a dataset ({found})", "choose another output folder")


def replace_dir(final: Path, build: Callable[[Path], None], owned: Callable[[Path], bool], *,
                dataset: Path | None = None, what: str = "output folder", how: str = "") -> None:
    """Build a new folder with ``build(tmp)`` beside ``final`` and swap it in.

    ``final`` is checked (``check_dir``) before anything is written; the old folder is
    renamed aside, the new one renamed into place, and only then is the old one removed.
    If the swap fails the old folder is put back.
    """
    final = Path(os.path.abspath(final))
    check_dir(final, owned, dataset=dataset, what=what, how=how)
    final.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}.{secrets.token_hex(4)}"
    tmp = final.with_name(f".{final.name}.{tag}.tmp")
    old = final.with_name(f".{final.name}.{tag}.old")
    tmp.mkdir()
    try:
        build(tmp)
        # Checked again: the folder may have changed while the new one was built.
        check_dir(final, owned, dataset=dataset, what=what, how=how)
        moved = False
        if final.exists():
            os.replace(final, old)
            moved = True
        try:
            os.replace(tmp, final)
        except OSError:
            if moved:
                os.replace(old, final)
            raise
        fsync_dir(final.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
