"""Export reads clips as columns (issue 17 point 3): the metadata it writes is, byte for byte,
what the record path wrote (every clip a record, the review applied, each path through
``confine.inside``, csv.DictWriter), on a small real dataset with the hard cases in it."""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest

from wandata import export as ex
from wandata.confine import OutsideRoot, inside
from wandata.dataset import review
from wandata.dataset.manifest import Manifest
from wandata.dataset.records import KEPT, ClipRecord, SourceRecord

from .test_export import SPECIAL, tiny_dataset, write_clip

FALLBACK = "a clip"


def reference_rows(ds: Path) -> list[dict]:
    """The rows as the export made them before it read columns."""
    rows = []
    for c in review.reviewed(ds, Manifest.reader(ds).all_clips()):
        if c.status != KEPT:
            continue
        try:
            inside(ds, c.path)
        except OutsideRoot:
            continue
        rows.append({"video": Path(c.path).as_posix(), "prompt": c.caption if c.caption.strip() else FALLBACK})
    return rows


def reference_csv(rows: list[dict]) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["video", "prompt"], lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue().encode("utf-8")


@pytest.fixture
def hard(tmp_path) -> Path:
    """Nine kept clips over three sources, then: special captions and an empty one, paths
    spelled with ``./`` and ``//`` and through a folder link, one leading out, a rejection
    and a caption edit in the review journal, a source appended as a part."""
    ds = tiny_dataset(tmp_path / "ds", 9)
    (ds / "clips" / "linked").symlink_to(ds / "clips" / "src1")
    write_clip(tmp_path / "outside" / "victim.mp4", 112, 64, 9)
    m = Manifest(ds)
    clips = m.all_clips()
    for c, caption in zip(clips, SPECIAL):
        c.caption = caption
    clips[8].caption = ""
    clips[1].path = "./" + clips[1].path
    clips[2].path = clips[2].path.replace("/", "//", 1)
    clips[4].path = "clips/linked/" + Path(clips[4].path).name
    clips[5].path = os.path.relpath(tmp_path / "outside" / "victim.mp4", ds)
    m.save()
    b = review.new_batch()
    review.append(ds, [review.entry(clips[0], "status", None, "rejected", batch=b, session="t"),
                       review.entry(clips[3], "caption", clips[3].caption, "edited, in review", batch=b,
                                    session="t")])
    src = SourceRecord(path="/raw/late.mp4", source_id="f" * 16)
    write_clip(ds / "clips" / "late" / "c.mp4", 112, 64, 9)
    m.put(src, [ClipRecord("late-0", src.source_id, src.path, 0, 0, 0.0, 1.0, num_frames=9, fps=16.0,
                           bucket="112x64", width=112, height=64, path="clips/late/c.mp4", caption="late one")])
    m.append([src.path])
    return ds


def test_csv_and_jsonl_are_byte_for_byte_those_of_the_record_path(hard, tmp_path):
    rows = reference_rows(hard)
    assert len(rows) == 8                    # 10 clips, one rejected, one leading out
    csv_out = ex.export(hard, "csv", out=tmp_path / "o" / "metadata.csv", fallback_caption=FALLBACK)
    assert Path(csv_out["metadata"]).read_bytes() == reference_csv(rows)
    assert [r["path"] for r in csv_out["refused"]] == [os.path.join("..", "outside", "victim.mp4")]
    jl = ex.export(hard, "jsonl", out=tmp_path / "o" / "metadata.jsonl", fallback_caption=FALLBACK)
    assert Path(jl["metadata"]).read_text() == "".join(json.dumps(r, ensure_ascii=True) + "\n" for r in rows)


def test_the_read_back_check_still_refuses_what_pandas_changes(hard, tmp_path, monkeypatch):
    pd = pytest.importorskip("pandas")
    real = pd.read_csv

    def shifted(path, *a, **k):             # a pandas that reads one prompt otherwise
        df = real(path, *a, **k)
        df.loc[2, "prompt"] = "changed"
        return df
    monkeypatch.setattr(pd, "read_csv", shifted)
    out = tmp_path / "o" / "metadata.csv"
    with pytest.raises(ex.ExportError) as e:
        ex.export(hard, "csv", out=out, fallback_caption=FALLBACK)
    assert "pandas does not read the CSV back unchanged" in str(e.value)
    assert len(e.value.items) == 1 and "pandas reads 'changed'" in e.value.items[0]
    assert not out.exists()
