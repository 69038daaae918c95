"""Confinement of many paths at once (``confine.Within``): the same answers and the same
refusals as ``confine.inside`` path by path, links and ``..`` included."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from wandata.confine import OUTSIDE_ROOT, OutsideRoot, Within, inside


@pytest.fixture
def tree(tmp_path) -> Path:
    """``tmp/ds`` with clips, and beside it ``tmp/outside``; links inside the dataset that lead
    out of it (a folder, a file, a relative one) and that stay in it."""
    ds, out = tmp_path / "ds", tmp_path / "outside"
    (ds / "clips" / "src").mkdir(parents=True)
    (ds / "clips" / "src" / "a.mp4").write_bytes(b"a")
    (ds / "top.mp4").write_bytes(b"t")
    out.mkdir()
    (out / "victim.mp4").write_bytes(b"v")
    (ds / "clips" / "out").symlink_to(out)                          # a folder leading out
    (ds / "clips" / "in").symlink_to(ds / "clips" / "src")          # a folder staying in
    (ds / "clips" / "rel").symlink_to("src")                        # relative, staying in
    (ds / "clips" / "up").symlink_to("../..")                       # relative, leading out
    (ds / "clips" / "src" / "fileout.mp4").symlink_to(out / "victim.mp4")
    (ds / "clips" / "src" / "filein.mp4").symlink_to(ds / "top.mp4")
    (ds / "clips" / "loop").symlink_to("loop")
    return ds


PATHS = [
    "clips/src/a.mp4", "top.mp4", "clips/src/missing.mp4", "clips/nofolder/x.mp4",
    "clips/src/a.mp4/below",                                     # through a file
    "../outside/victim.mp4", "clips/../../outside/victim.mp4",   # '..' out
    "clips/../clips/src/a.mp4", "clips/src/../../top.mp4",       # '..' staying in
    "clips/out/victim.mp4", "clips/up/outside/victim.mp4", "clips/src/fileout.mp4",  # links out
    "clips/in/a.mp4", "clips/rel/a.mp4", "clips/src/filein.mp4",  # links staying in
    "clips//src/a.mp4", "./clips/src/a.mp4", "clips/./src/a.mp4", "clips/src/a.mp4/", "clips/src/.",
    ".", "./", "..", "", "clips/src/\x00a.mp4", "\x00",
    "/etc/passwd", "//etc/passwd",
]


def _answer(fn, root, value):
    try:
        return ("ok", str(fn(root, value)))
    except OutsideRoot as e:
        return ("refused", str(e), e.code)
    except (RuntimeError, OSError) as e:   # a link loop: resolve raises, and so must Within
        return ("error", type(e).__name__)


@pytest.mark.parametrize("root_kind", ["real", "relative", "through_a_link"])
def test_within_answers_and_refuses_as_inside_does(tree, root_kind, monkeypatch):
    root = tree
    if root_kind == "relative":
        monkeypatch.chdir(tree.parent)
        root = Path("ds")
    elif root_kind == "through_a_link":
        (tree.parent / "dslink").symlink_to(tree)
        root = tree.parent / "dslink"
    within = Within(root)
    for value in PATHS + ["clips/loop/x.mp4"]:
        want = _answer(lambda r, v: inside(r, v, "clip path"), root, value)
        got = _answer(lambda r, v: within(v, "clip path"), root, value)
        assert got == want, value
        if want[0] == "refused":
            assert want[2] == OUTSIDE_ROOT
        if want[0] == "ok":
            text, is_file = within.check(value, "clip path")
            assert text == want[1]
            assert is_file is None or is_file == Path(want[1]).is_file(), value


def test_the_refusals_cover_links_dots_absolute_paths_and_nul(tree):
    within = Within(tree)
    for value in ["clips/out/victim.mp4", "clips/up/outside/victim.mp4", "clips/src/fileout.mp4",
                  "../outside/victim.mp4", "clips/../../outside/victim.mp4", "/etc/passwd",
                  str(tree / "top.mp4"), "clips/src/\x00a.mp4", ""]:
        with pytest.raises(OutsideRoot):
            within(value)
    # the plain paths took the lexical way: no resolve for them
    within.slow = 0
    for value in ["clips/src/a.mp4", "top.mp4", "clips/src/missing.mp4"]:
        assert within(value) == inside(tree, value)
    assert within.slow == 0


def test_a_folder_that_becomes_a_link_is_seen_by_a_new_within(tree):
    assert Within(tree)("clips/src/a.mp4") == tree / "clips" / "src" / "a.mp4"
    os.rename(tree / "clips" / "src", tree / "clips" / "src.real")
    (tree / "clips" / "src").symlink_to(tree.parent / "outside")
    with pytest.raises(OutsideRoot):
        Within(tree)("clips/src/victim.mp4")
