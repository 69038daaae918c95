"""Paths read back from files stay inside the folder they belong to.

A manifest, an export record, a caption sidecar or a config file is data that anyone can
edit (or that a broken tool wrote). A path in it such as ``../../x`` or ``/etc/passwd``
must never make wandata read, link, write or delete a file outside the root that the file
describes. Every such path goes through ``inside`` before it is used.
"""
from __future__ import annotations

import errno
import os
import stat
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


POSIX_PATHS = os.sep == "/" and os.altsep is None   # elsewhere every path takes the slow, general way
# The errors after which pathlib's is_file() answers False rather than raising (pathlib._IGNORED_ERRNOS).
_NO_FILE = (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP)


class Within:
    """``inside`` for many paths under one root (a million clip paths of a manifest): the same
    answers, the same refusals, without two ``Path.resolve`` per path.

    The root is resolved once. A path that is plainly relative (no empty, ``.`` or ``..`` part:
    ``clips/src/x.mp4``) resolves to the root joined with it unless one of its parts is a
    symbolic link, so only that is looked at: each folder on the way is ``lstat``-ed once for all
    the paths under it, the file itself once. Any other path (a ``..``, a link on the way) goes
    through ``inside`` itself, links followed and the result checked as there.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.real = self.root.resolve()
        self._prefix = os.path.join(str(self.real), "")   # the root and its separator
        self._plain_dirs: dict[str, bool] = {"": True}   # folder (relative) -> no link on the way
        self.slow = 0                                    # paths that went through ``inside``

    def _no_link(self, rel: str) -> bool:
        return self._lstat(self._prefix + rel)[0]

    @staticmethod
    def _lstat(path: str) -> tuple[bool, bool | None]:
        """(not a link, is a regular file: None where the error says nothing of it)."""
        try:
            mode = os.lstat(path).st_mode
        except OSError as e:
            # As realpath: what is not there (or not a folder) is taken as written; and as
            # Path.is_file: those errors mean no file, any other is raised by it.
            return True, (False if e.errno in _NO_FILE else None)
        except ValueError:
            return True, False
        return not stat.S_ISLNK(mode), stat.S_ISREG(mode)

    def _plain_dir(self, rel: str) -> bool:
        """No empty, ``.`` or ``..`` part in folder ``rel`` and no link on the way (cached)."""
        known = self._plain_dirs.get(rel)
        if known is None:
            parent, _, name = rel.rpartition("/")
            known = name not in ("", ".", "..") and self._plain_dir(parent) and self._no_link(rel)
            self._plain_dirs[rel] = known
        return known

    def check(self, value: str | os.PathLike, what: str = "path") -> tuple[str, bool | None]:
        """``(str(inside(root, value, what)), is_file)``, or ``OutsideRoot`` as ``inside`` raises.
        ``is_file`` is ``Path.is_file()`` of it where the check saw it (a file not behind a
        link), else None."""
        text = os.fspath(value)
        if not text or "\x00" in text or os.path.isabs(text) or os.path.splitdrive(text)[0]:
            raise OutsideRoot(text, self.root, what)
        if POSIX_PATHS:
            folder, _, name = text.rpartition("/")
            if name not in ("", ".", "..") and self._plain_dir(folder):
                full = self._prefix + text
                plain, is_file = self._lstat(full)
                if plain:
                    return full, is_file
        self.slow += 1
        return str(inside(self.root, text, what)), None

    def text(self, value: str | os.PathLike, what: str = "path") -> str:
        """``str(inside(root, value, what))``, or ``OutsideRoot`` as it raises."""
        return self.check(value, what)[0]

    def __call__(self, value: str | os.PathLike, what: str = "path") -> Path:
        """``inside(root, value, what)``."""
        return Path(self.text(value, what))
