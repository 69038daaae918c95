"""The columnar read of clips (``manifest.read_clips``, ``review.reviewed_table``): the same
clips, values and order as the records of ``Manifest.reader`` with the review applied, whatever
the files hold (parts, rows out of order, an older file without some columns, nulls)."""
from __future__ import annotations

import dataclasses

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from wandata.dataset import manifest as mf
from wandata.dataset import review
from wandata.dataset.manifest import MANIFEST_NAME, Manifest, clip_records, read_clips
from wandata.dataset.records import ClipRecord, SourceRecord


def source(i: int, n: int = 4, tag: str = "") -> tuple[SourceRecord, list[ClipRecord]]:
    path = f"/raw/s{i:03d}.mp4"
    src = SourceRecord(path=path, source_id=f"id{i}", shots=[[0.0, 1.0]])
    clips = [ClipRecord(f"c{i}_{j}", src.source_id, path, 0, j, 0.0, 1.0, start_s=j * 0.5, end_s=j * 0.5 + 1.0,
                        num_frames=17, bucket="160x96", path=f"clips/{i}/{j}.mp4", caption=f"clip {j}{tag}",
                        decoded_digest=f"{i:04d}{j:04d}", src_frames=[j], phash=["ab" * 8],
                        motion=float(j), flags=["x"] if j == 1 else [])
             for j in range(n)]
    for c in clips[2:3]:
        c.set("dropped", "filter_blur", "too blurry")
    return src, clips


def fields(c: ClipRecord) -> tuple:
    return tuple((f.name, getattr(c, f.name)) for f in dataclasses.fields(c))


def same_as_reader(ds) -> list[ClipRecord]:
    want = review.reviewed(ds, Manifest.reader(ds).all_clips())
    got = clip_records(review.reviewed_table(ds, read_clips(ds)))
    assert [fields(c) for c in got] == [fields(c) for c in want]
    return got


def test_columns_read_as_the_records_do_with_parts_order_old_files_and_nulls(tmp_path, monkeypatch):
    monkeypatch.setattr(mf, "MIN_FOLD", 10 ** 9)
    rows = []
    for i in (5, 1, 3):                       # another tool's file: sources out of order
        src, clips = source(i)
        rows += [src.row(), *(c.row() for c in clips)]
    at = {r["clip_id"]: r for r in rows if r["kind"] == "clip"}
    at["c5_0"]["caption"] = None               # nulls read as the defaults
    at["c5_1"]["motion"] = None
    at["c1_2"]["status"] = None
    at["c1_3"]["decoded_digest"] = None
    # an older file: without some columns
    pq.write_table(pa.Table.from_pylist(rows, schema=mf.SCHEMA).drop_columns(["orientation", "flags"]),
                   tmp_path / MANIFEST_NAME)
    got = same_as_reader(tmp_path)
    assert [c.source_path for c in got] == sorted(c.source_path for c in got)
    by_id = {c.clip_id: c for c in got}
    assert by_id["c5_0"].caption == "" and by_id["c5_1"].motion == -1.0 and by_id["c1_2"].status == "kept"
    assert by_id["c1_3"].decoded_digest == "" and by_id["c1_1"].flags == [] and by_id["c1_1"].orientation == ""

    m = Manifest(tmp_path)                     # parts: one replacing a source, one new
    m.put(*source(3, tag=" again"))
    m.append(["/raw/s003.mp4"])
    m.put(*source(0, n=2))
    m.append(["/raw/s000.mp4"])
    assert list((tmp_path / mf.PARTS_NAME).iterdir())   # live parts: the merged read
    got = same_as_reader(tmp_path)
    assert {c.caption for c in got if c.source_path == "/raw/s003.mp4"} >= {"clip 0 again"}
    m.compact()
    same_as_reader(tmp_path)
    assert read_clips(tmp_path, ["clip_id", "status"]).column_names == ["clip_id", "status"]
    with pytest.raises(ValueError):
        read_clips(tmp_path, ["kind"])


def test_the_review_applies_to_columns_as_to_records(tmp_path):
    m = Manifest(tmp_path)
    for i in range(3):
        m.put(*source(i))
    m.save()
    clips = Manifest(tmp_path).all_clips()
    b = review.new_batch()
    stale = review.entry(clips[5], "status", None, "rejected", batch=b, session="t")
    stale["identity"] = "pixels:other"
    review.append(tmp_path, [
        review.entry(clips[0], "status", None, "rejected", batch=b, session="t", note="shaky"),
        review.entry(clips[2], "status", None, "kept", batch=b, session="t"),       # kept over a drop
        review.entry(clips[4], "caption", clips[4].caption, "a new caption", batch=b, session="t"),
        review.entry(clips[7], "status", None, "rejected", batch=b, session="t"),
        review.entry(clips[7], "status", "rejected", None, batch=b, session="t"),   # undone
        stale])
    got = same_as_reader(tmp_path)
    by_id = {c.clip_id: c for c in got}
    assert by_id[clips[0].clip_id].reason_code == "rejected_in_review"
    assert by_id[clips[2].clip_id].status == "kept"
    assert by_id[clips[4].clip_id].caption == "a new caption" and by_id[clips[4].clip_id].captioner == "review"
    assert by_id[clips[5].clip_id].status == "kept" and by_id[clips[7].clip_id].status == "kept"


def test_records_built_by_columns_share_repeated_values(tmp_path):
    m = Manifest(tmp_path)
    for i in range(1200):
        m.put(*source(i))
    m.save()
    clips = Manifest.reader(tmp_path).all_clips()
    assert len(clips) == 4800
    assert len({id(c.bucket) for c in clips}) == 1 and len({id(c.status) for c in clips}) <= 2
    assert not hasattr(clips[0], "__dict__")       # slots: no dict per record
