"""``wandata captions export`` / ``import``: captions survive a spreadsheet round trip exactly."""
from __future__ import annotations

import csv

import pytest
from click.testing import CliRunner

from wandata.cli import main
from wandata.dataset.manifest import Manifest
from wandata.dataset.records import KEPT

# Text a CSV reader or a spreadsheet is tempted to change.
TRICKY = ["NA", "null", "  padded  ", 'a "quoted", comma caption', "line one\nline two", "caf\u00e9 \u732b \U0001F3A5",
          "=1+1", "0012"]


def kept(ds):
    return [c for c in Manifest(ds).all_clips() if c.status == KEPT and c.path]


def set_captions(ds, texts):
    m = Manifest(ds)
    for c, t in zip([c for c in m.all_clips() if c.status == KEPT and c.path], texts):
        c.caption, c.captioner = t, "test"
    m.save()


def test_export_then_import_unchanged_is_a_no_op(sample_dataset, tmp_path):
    set_captions(sample_dataset, TRICKY)
    out = tmp_path / "caps.csv"
    r = CliRunner().invoke(main, ["captions", "export", str(out), "-d", str(sample_dataset)])
    assert r.exit_code == 0 and "wrote 8 clip(s)" in r.output
    assert out.read_bytes().startswith(b"\xef\xbb\xbf")  # BOM, so Excel reads UTF-8
    pd = pytest.importorskip("pandas")
    df = pd.read_csv(out, keep_default_na=False, dtype=str)
    assert list(df.columns) == ["clip_id", "caption", "captioner", "clip", "source"]
    assert list(df["caption"]) == TRICKY
    r = CliRunner().invoke(main, ["captions", "import", str(out), "-d", str(sample_dataset)])
    assert r.exit_code == 0 and "0 caption(s) changed, 8 unchanged" in r.output
    assert [c.caption for c in kept(sample_dataset)] == TRICKY
    assert {c.captioner for c in kept(sample_dataset)} == {"test"}


def test_edited_captions_come_back_exactly(sample_dataset, tmp_path):
    set_captions(sample_dataset, ["old"] * 8)
    out = tmp_path / "caps.csv"
    CliRunner().invoke(main, ["captions", "export", str(out), "-d", str(sample_dataset)])
    with open(out, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    for row, text in zip(rows, TRICKY):
        row["caption"] = text
    rows[-1]["caption"] = ""  # an emptied cell clears the caption
    edited = tmp_path / "edited.csv"
    with open(edited, "w", newline="", encoding="utf-8") as f:  # no BOM, as a script would write it
        w = csv.DictWriter(f, fieldnames=["caption", "clip_id"], extrasaction="ignore")  # columns reordered
        w.writeheader()
        w.writerows(rows)
    r = CliRunner().invoke(main, ["captions", "import", str(edited), "-d", str(sample_dataset)])
    assert r.exit_code == 0 and "8 caption(s) changed" in r.output, r.output
    clips = kept(sample_dataset)
    assert [c.caption for c in clips] == TRICKY[:7] + [""]
    assert [c.captioner for c in clips] == ["manual"] * 7 + [""]


def test_unknown_clip_ids_stop_the_import_unless_ignored(sample_dataset, tmp_path):
    set_captions(sample_dataset, ["old"] * 8)
    first = kept(sample_dataset)[0].clip_id
    bad = tmp_path / "other.csv"
    bad.write_text(f"clip_id,caption\n{first},new\nnot-a-clip,whatever\n", encoding="utf-8")
    r = CliRunner().invoke(main, ["captions", "import", str(bad), "-d", str(sample_dataset)])
    assert r.exit_code == 1 and "not-a-clip" in r.output and "Nothing was imported" in r.output
    assert kept(sample_dataset)[0].caption == "old"
    r = CliRunner().invoke(main, ["captions", "import", str(bad), "-d", str(sample_dataset), "--ignore-unknown"])
    assert r.exit_code == 0 and "1 caption(s) changed" in r.output and "1 unknown" in r.output
    assert kept(sample_dataset)[0].caption == "new"

    (tmp_path / "nohead.csv").write_text("id,text\nx,y\n", encoding="utf-8")
    r = CliRunner().invoke(main, ["captions", "import", str(tmp_path / "nohead.csv"), "-d", str(sample_dataset)])
    assert r.exit_code == 1 and "needs the columns clip_id and caption" in r.output
    (tmp_path / "dup.csv").write_text(f"clip_id,caption\n{first},a\n{first},b\n", encoding="utf-8")
    r = CliRunner().invoke(main, ["captions", "import", str(tmp_path / "dup.csv"), "-d", str(sample_dataset)])
    assert r.exit_code == 1 and "rows 2 and 3" in r.output
