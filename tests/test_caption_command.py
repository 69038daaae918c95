"""The ``command`` captioner runs a real program (tests/caption_tools/fake_captioner.py)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from wandata.caption import CaptionerError, caption_clips, make
from wandata.cli import main
from wandata.dataset.manifest import Manifest
from wandata.dataset.records import KEPT

SCRIPT = Path(__file__).resolve().parent / "caption_tools" / "fake_captioner.py"


def kept(ds: Path):
    return [c for c in Manifest(ds).all_clips() if c.status == KEPT and c.path]


def test_command_gets_the_clip_and_frames_and_its_stdout_is_the_caption(sample_dataset, monkeypatch):
    clips = kept(sample_dataset)
    monkeypatch.setenv("FAKE_FAIL", Path(clips[0].path).name)
    monkeypatch.setenv("FAKE_EMPTY", Path(clips[1].path).name)
    monkeypatch.setenv("FAKE_SLOW", Path(clips[2].path).name)
    cap = make("command", {"cmd": json.dumps([sys.executable, str(SCRIPT)]), "frames": "3",
                           "timeout": "5", "workers": "2"})
    s = caption_clips(Manifest(sample_dataset), cap, progress=False)
    assert s.captioned == 5 and s.failed == 3
    assert s.captioner == f"command:{Path(sys.executable).name} fake_captioner.py"
    reasons = {e["clip_id"]: e["reason"] for e in s.errors}
    assert "exited with status 3" in reasons[clips[0].clip_id] and "cannot caption" in reasons[clips[0].clip_id]
    assert "printed no caption" in reasons[clips[1].clip_id]
    assert "took longer than 5 s" in reasons[clips[2].clip_id]
    for c in kept(sample_dataset)[3:]:
        assert c.caption == f"{c.clip_id} seen in 3 frames"  # quotes and blank lines cleaned
        assert c.captioner == s.captioner


def test_placeholders_put_the_clip_and_frames_where_the_program_wants_them(sample_dataset, tmp_path):
    script = tmp_path / "args.py"
    script.write_text("import sys; print(' '.join(a.rsplit('.', 1)[-1] for a in sys.argv[1:]))")
    cap = make("command", {"cmd": f"'{sys.executable}' '{script}' --frames {{frames}} --clip {{clip}}",
                           "frames": "2"})
    s = caption_clips(Manifest(sample_dataset), cap, clip_ids={kept(sample_dataset)[0].clip_id}, progress=False)
    assert s.captioned == 1
    assert kept(sample_dataset)[0].caption == "--frames jpg jpg --clip mp4"


def test_command_cli_and_missing_program(sample_dataset):
    r = CliRunner().invoke(main, ["caption", "-d", str(sample_dataset), "-c", "command", "--quiet",
                                  "-O", f"cmd={json.dumps([sys.executable, str(SCRIPT)])}", "-O", "frames=0"])
    assert r.exit_code == 0, r.output
    assert {c.caption for c in kept(sample_dataset)} == {f"{c.clip_id} seen in 0 frames" for c in kept(sample_dataset)}
    with pytest.raises(CaptionerError, match="was not found"):
        make("command", {"cmd": "no-such-captioner-program --x"})
    with pytest.raises(CaptionerError, match="needs a program"):
        make("command")
