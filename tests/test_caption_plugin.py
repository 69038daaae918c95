"""A captioner from another package, found through the ``wandata.captioners`` entry point.

The test writes what ``pip install`` of a small plugin package would leave in
site-packages: its module and a ``*.dist-info`` folder whose ``entry_points.txt``
registers the captioners. Putting that folder on ``sys.path`` is all Python's
``importlib.metadata`` needs, so nothing is installed and CI needs no network.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from wandata.caption import BUILTINS, CaptionerError, available, caption_clips, load, make
from wandata.caption.sidecar import SidecarCaptioner
from wandata.cli import main
from wandata.dataset.manifest import Manifest
from wandata.dataset.records import KEPT

PLUGIN = '''
from wandata.caption import Captioner, Option, Result


class Shout(Captioner):
    name = "shout"
    options = {"word": Option("hello", "what to shout")}

    def caption_batch(self, items):
        return [Result(text=f"{self.opts['word'].upper()} {it.record.orientation}") for it in items]


def stem_caption(clip, suffix=""):
    return f"a clip of {clip.path.stem}{suffix}"
'''

ENTRY_POINTS = '''
[wandata.captioners]
shout = wandata_test_plugin:Shout
stem = wandata_test_plugin:stem_caption
broken = wandata_test_plugin_missing:Nope
sidecar = wandata_test_plugin:Shout
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    site = tmp_path / "site"
    info = site / "wandata_test_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (site / "wandata_test_plugin.py").write_text(textwrap.dedent(PLUGIN))
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: wandata-test-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS.lstrip())
    monkeypatch.syspath_prepend(str(site))
    return site


def test_plugin_captioners_are_found_by_name(plugin, sample_dataset):
    names = available()
    assert {"shout", "stem", "broken"} <= set(names) and names["shout"] == "wandata_test_plugin:Shout"
    s = caption_clips(Manifest(sample_dataset), make("shout", {"word": "hey"}), progress=False)
    assert s.captioned == 8 and s.captioner == "shout"
    s = caption_clips(Manifest(sample_dataset), make("stem", {"suffix": "!"}), recaption=True, progress=False)
    assert s.captioner == "stem"
    for c in Manifest(sample_dataset).all_clips():
        if c.status == KEPT and c.path:
            assert c.caption == f"a clip of {Path(c.path).stem}!" and c.captioner == "stem"


def test_plugin_through_the_cli(plugin, sample_dataset):
    r = CliRunner().invoke(main, ["captions", "list"])
    assert r.exit_code == 0 and "shout  (wandata_test_plugin:Shout)" in r.output and "what to shout" in r.output
    r = CliRunner().invoke(main, ["caption", "-d", str(sample_dataset), "-c", "shout", "-O", "word=ohwx", "--quiet"])
    assert r.exit_code == 0, r.output
    assert {c.caption for c in Manifest(sample_dataset).all_clips() if c.caption} == {"OHWX landscape",
                                                                                       "OHWX portrait"}


def test_broken_plugins_and_builtin_names(plugin):
    with pytest.raises(CaptionerError, match=r"'broken' is registered as .* could not be imported"):
        make("broken")
    # A plugin cannot take over a built-in's name.
    assert load("sidecar") is SidecarCaptioner and available()["sidecar"] == BUILTINS["sidecar"]
